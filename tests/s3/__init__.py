"""Real S3-compatible servers on loopback for the tests: moto's server and Ceph radosgw."""
