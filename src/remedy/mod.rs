//! The commands and signals that change a server, one file each: [`kill`], [`shutdown`],
//! [`signal`], [`failover`]. Each is sent exactly once, on the probe's own connection (where
//! BUSY was just seen) or to the peers the plan names, and never retried: its outcome goes back
//! to the engine.

pub mod failover;
pub mod kill;
pub mod shutdown;
pub mod signal;
