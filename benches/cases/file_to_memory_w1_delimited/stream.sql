CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT)
WITH (DATASOURCE="events.csv", TYPE="file", FORMAT="delimited", DELIMITER=",")
