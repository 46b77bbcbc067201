CREATE TABLE devices (id STRING, location STRING, threshold FLOAT)
WITH (DATASOURCE="devices.jsonl", TYPE="file", FORMAT="json", KEY="id")
