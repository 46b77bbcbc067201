DROP TABLE IF EXISTS bench_file_to_mysql_w1;
CREATE TABLE bench_file_to_mysql_w1 (device VARCHAR(20), temperature DOUBLE);
