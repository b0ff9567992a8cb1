"""The local stack that stands in for AWS: kinesalite, moto server, private PostgreSQL."""
