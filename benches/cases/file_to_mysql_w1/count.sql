SELECT COUNT(*) FROM bench_file_to_mysql_w1;
