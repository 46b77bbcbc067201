CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT)
WITH (DATASOURCE="events.jsonl", TYPE="file", FORMAT="delimited")
