//! Plain values every layer shares, and nothing else: no tokio, fred, file system or network
//! (a layering test holds it so). The words of the domain ([`kinds`]), what a healthy server said
//! ([`snapshot`]), one SLOWLOG entry ([`slowlog`]), who this primary is and who took over
//! from it ([`takeover`]), the one way text is cut ([`text`]) and the
//! one place the wall clock is read ([`clock`]).

pub mod clock;
pub mod duration;
pub mod kinds;
pub mod slowlog;
pub mod snapshot;
pub mod takeover;
pub mod text;
pub mod told;
