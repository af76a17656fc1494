//! Counting clients of every dialect that resume from their last position whenever their
//! connection ends, a publisher that records what each publish was answered, and the
//! tally of lost and duplicated messages: shared by the tests that put pushhub through a
//! failure (a node killed, Redis lost, an upgrade) and must show nothing went missing.

pub mod clients;
pub mod harness;
