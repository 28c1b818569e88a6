//! The words every layer shares: what a BUSY reply says is running ([`BusyKind`], with its
//! parser), what the end of a budget does ([`Then`]) and how a failover is made
//! ([`FailoverVia`]), and why a server refuses busyguard ([`FaultCause`]). Each is defined once, with its table of every variant and its word
//! (`words!`): the policy's validator, the docs and the trail read their words from here, and a
//! new variant is a compiler error wherever it must be handled (no code matches them with `_`).

use serde::{Deserialize, Serialize};

/// An enum of words, with `ALL` (every variant, in order), `NAMES` (their words, in the same
/// order), `name` and `parse`, from one list.
macro_rules! words {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$doc:meta])* $variant:ident = $word:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$doc])* #[serde(rename = $word)] $variant,)*
        }

        impl $name {
            /// Every variant, in the order the docs list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Their words, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($word),*];

            /// The word, as policies and the trail write it.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }

            /// The variant a word names.
            pub fn parse(word: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.name() == word)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

words! {
    /// What the BUSY text says is running.
    pub enum BusyKind {
        /// EVAL / EVALSHA: "... is busy running a script. You can only call SCRIPT KILL or
        /// SHUTDOWN NOSAVE."
        Script = "script",
        /// FCALL: "... is busy running a script. You can only call FUNCTION KILL or SHUTDOWN
        /// NOSAVE."
        Function = "function",
        /// A module command: "... is busy running a module command." No kill exists for it.
        Module = "module",
        /// A BUSY reply in no form the servers send for scripts, functions or plain module
        /// commands (a bare `BUSY`, a module's own `RM_Yield` text): try SCRIPT KILL and read
        /// its answer.
        Unknown = "unknown",
    }
}

impl BusyKind {
    /// Read the kind from a BUSY error line. The code must be exactly `BUSY` (not `BUSYKEY`,
    /// `BUSYGROUP`); the server's name is not matched (Valkey says "Valkey is busy"), the rest
    /// of the sentence is, exactly as Redis 6.2 to 8 and Valkey write it (`shared.slowevalerr`,
    /// `slowscripterr`, `slowmoduleerr`). Anything else is [`BusyKind::Unknown`]: a module may
    /// write any text, even one naming SCRIPT KILL.
    pub fn from_error(line: &str) -> Option<BusyKind> {
        let (code, text) = line.split_once(' ').unwrap_or((line, ""));
        if code != "BUSY" {
            return None;
        }
        let after_name = text
            .split_once(' ')
            .map_or("", |(_server_name, rest)| rest)
            .trim_end();
        Some(match after_name {
            "is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE." => {
                BusyKind::Script
            }
            "is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE." => {
                BusyKind::Function
            }
            "is busy running a module command." => BusyKind::Module,
            _ => BusyKind::Unknown,
        })
    }
}

words! {
    /// What happens when the budget of an unkillable script runs out (`on_unkillable.then`).
    #[derive(Default)]
    pub enum Then {
        /// SHUTDOWN NOSAVE, version-aware, under the guards and limits.
        Shutdown = "shutdown",
        /// Never shut down: notify, and wait for the script to end.
        #[default]
        Notify = "notify",
        /// Promote a replica (Sentinel, Cluster), then shut the busy old primary down.
        Failover = "failover",
        /// Ask an operator; `ask.default` applies at the end of `ask.timeout`.
        Ask = "ask",
    }
}

impl Then {
    /// What it does to the server, in a few words (the policy reference lists them).
    pub const fn doc(self) -> &'static str {
        match self {
            Then::Shutdown => "SHUTDOWN NOSAVE, version-aware",
            Then::Notify => "never shut down",
            Then::Failover => {
                "promote a replica through Sentinel or the Cluster, then shut the busy old primary down"
            }
            Then::Ask => "an operator approves within `ask.timeout`, else `ask.default`",
        }
    }
}

words! {
    /// An escalation that ends the ladder by itself: what `failover.fallback` and `ask.default`
    /// say when no failover is made or no approval comes.
    #[derive(Default)]
    pub enum Resort {
        Shutdown = "shutdown",
        #[default]
        Notify = "notify",
    }
}

impl From<Resort> for Then {
    fn from(r: Resort) -> Then {
        match r {
            Resort::Shutdown => Then::Shutdown,
            Resort::Notify => Then::Notify,
        }
    }
}

words! {
    /// What an instance is doing, as `busyguard_state`, `ps` and `status` name it.
    #[derive(Default)]
    pub enum State {
        #[default]
        Healthy = "healthy",
        Busy = "busy",
        /// `then: ask`: an approval is awaited.
        Asking = "asking",
        /// `then: failover`: a promotion is awaited.
        FailingOver = "failing_over",
        Hang = "hang",
        /// Shut down by busyguard, awaited back.
        Down = "down",
        Unreachable = "unreachable",
        Loading = "loading",
        /// A configuration fault (NOAUTH, WRONGPASS, NOPERM): never acted on.
        Fault = "fault",
    }
}

words! {
    /// How a failover is made: through Sentinel, or by the busy node's replica in a Cluster.
    pub enum FailoverVia {
        Sentinel = "sentinel",
        Cluster = "cluster",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_and_serializes_as_itself() {
        for then in Then::ALL {
            assert_eq!(Then::parse(then.name()), Some(*then));
            assert_eq!(serde_json::to_value(then).unwrap(), then.name());
        }
        for kind in BusyKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert_eq!(Then::NAMES, ["shutdown", "notify", "failover", "ask"]);
        assert_eq!(Then::default(), Then::Notify);
    }
}

/// Why a server refuses busyguard, read from its error reply: what the metrics count as an
/// answer that leaves busyguard blind, told the same way by every notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCause {
    /// WRONGPASS, NOAUTH, a disabled user: the credential busyguard holds does not log in.
    Login,
    /// NOPERM: the user lacks a command or a key the probe needs.
    Rights,
    Other,
}

impl FaultCause {
    pub fn of(reply: &str) -> FaultCause {
        match reply.split(' ').next().unwrap_or_default() {
            "WRONGPASS" | "NOAUTH" => FaultCause::Login,
            "NOPERM" => FaultCause::Rights,
            // Redis 6's `requirepass` refusals.
            _ if reply.starts_with("ERR invalid password") || reply.starts_with("ERR AUTH") => {
                FaultCause::Login
            }
            _ => FaultCause::Other,
        }
    }
}
