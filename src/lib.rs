//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
pub mod check;
pub mod cli;
pub mod policy;
pub mod yaml;
