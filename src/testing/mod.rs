//! In-memory twins of the I/O edges, and the conformance suites every
//! implementation of an edge must pass. Used by unit tests and by the
//! integration tests (which run the same suites against DynamoDB, Glue and
//! S3 on moto); nothing in the daemon's or `convert`'s paths uses them.

pub mod catalog;
pub mod leases;
pub mod source;
pub mod suites;
