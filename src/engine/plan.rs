//! The policy's ladder in words, written once: `status` prints the whole plan, `ps` and the
//! control socket the next step of the incident in flight, so what an operator is told will
//! happen is what the engine does (each `then` and resort named by the command it sends, or by
//! saying that nothing will be sent).

use crate::model::duration::human_ms;
use crate::model::kinds::{Resort, Then};

use super::Rules;

impl Rules {
    /// What the end of the budget does to the server, in words.
    pub fn escalation_words(&self) -> String {
        self.escalation_words_for(self.then)
    }

    /// What the end of the budget does under `then` (the instance's, or a script rule's).
    pub fn escalation_words_for(&self, then: Then) -> String {
        let dry = if self.dry_run {
            " (dry-run: decided and recorded, never sent)"
        } else {
            ""
        };
        let resort = Rules::resort_words;
        match then {
            Then::Notify => {
                "nothing will be sent (`then: notify`): busyguard notifies and waits for the script to end".into()
            }
            Then::Shutdown => format!("SHUTDOWN NOSAVE, within the limits and guards{dry}"),
            Then::Failover => format!(
                "a failover to a listed replica, then SHUTDOWN NOSAVE of this server; if none is made within {}, {}{dry}",
                human_ms(self.failover_timeout),
                resort(self.failover_fallback)
            ),
            Then::Ask => format!(
                "ask an operator (`busyguard approve` shuts down, `busyguard hold` keeps it up); without an answer within {}, {}{dry}",
                human_ms(self.ask_timeout),
                resort(self.ask_default)
            ),
        }
    }

    /// What a resort (`ask.default`, `failover.fallback`) sends, in words.
    pub fn resort_words(resort: Resort) -> &'static str {
        match resort {
            Resort::Shutdown => "SHUTDOWN NOSAVE",
            Resort::Notify => "nothing is sent (notify)",
        }
    }

    /// Whether `approve` can change anything: under `then: notify` nothing is ever sent.
    pub fn approvable(then: Then) -> Result<(), String> {
        match then {
            Then::Notify => Err("approve does nothing here: the policy's `then: notify` never sends a shutdown; end the script yourself (`redis-cli SHUTDOWN NOSAVE`) or change `then`".into()),
            _ => Ok(()),
        }
    }

    /// The whole ladder, as `status` prints it.
    pub fn plan_words(&self) -> String {
        let kill = match self.kill_after {
            0 => "kill a runaway script at the first BUSY reply (SCRIPT KILL or FUNCTION KILL)"
                .to_string(),
            ms => format!(
                "kill a runaway script {} after the first BUSY reply (SCRIPT KILL or FUNCTION KILL)",
                human_ms(ms)
            ),
        };
        let limits = match self.then {
            Then::Notify => String::new(),
            _ => format!(
                "; at most {} shutdown(s) per {}",
                self.max_shutdowns,
                human_ms(self.per)
            ),
        };
        let dry = if self.dry_run {
            " (dry-run: decided and recorded, never sent)"
        } else {
            ""
        };
        let rules: Vec<String> = self
            .scripts
            .iter()
            .map(|r| {
                let kill = match (r.never_kill, r.kill_after) {
                    (true, _) => "never killed".to_string(),
                    (false, Some(d)) => format!(
                        "killed {} after the first BUSY",
                        human_ms(d.as_millis() as u64)
                    ),
                    (false, None) => "killed as above".to_string(),
                };
                let wait = r.wait.map_or(self.wait, |d| d.as_millis() as u64);
                let then = r.then.unwrap_or(self.then);
                format!(
                    "function `{}`: {kill}; at {}: {}",
                    r.names.label(),
                    human_ms(wait),
                    self.escalation_words_for(then)
                )
            })
            .collect();
        let rules = match rules.is_empty() {
            true => String::new(),
            false => format!(
                ". Script rules (when FUNCTION STATS names the function; else the above): {}",
                rules.join("; ")
            ),
        };
        format!(
            "{kill}{dry}; if it is unkillable, at {} after the first BUSY: {}{limits}{rules}",
            human_ms(self.wait),
            self.escalation_words()
        )
    }

    /// The ladder in a few words, for the start line of the log.
    pub fn short_plan(&self) -> String {
        let mode = if self.dry_run { "dry-run" } else { "enforce" };
        let then = match self.then {
            Then::Notify => "notify only",
            Then::Shutdown => "SHUTDOWN NOSAVE",
            Then::Failover => "failover, then SHUTDOWN NOSAVE",
            Then::Ask => "ask an operator",
        };
        format!(
            "{mode}; kill after {}; if unkillable, {then} at {}",
            human_ms(self.kill_after),
            human_ms(self.wait)
        )
    }
}
