//! One file (or folder) per `busyguard <verb>` that is not `run`: [`check`] validates policy
//! files, [`status`] asks each server once what a decision would rest on, [`show`] reads the
//! trail back as timelines, [`simulate`] rehearses a policy on the engine, and [`steer`] is the
//! control socket's client (`pause`, `resume`, `hold`, `release`, `approve`, `ps`); [`colour`]
//! paints their state words for a terminal.

pub mod check;
pub mod colour;
pub mod show;
pub mod simulate;
pub mod status;
pub mod steer;
