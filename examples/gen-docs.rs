//! Man pages and shell completions, generated from the CLI definition (`busyguard::cli::Cli`)
//! and the policy key table (`busyguard::policy::keys`), so they never drift from the binary.
//! `scripts/package` runs it: `cargo run --example gen-docs -- OUT_DIR` writes
//! `OUT_DIR/man/*.1`, `OUT_DIR/man/busyguard-policy.5` and `OUT_DIR/completions/{busyguard.bash,
//! _busyguard,busyguard.fish}`; `gen-docs --policy-reference` prints docs/policy-reference.md.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .expect("usage: gen-docs OUT_DIR | --policy-reference");
    if arg == "--policy-reference" {
        print!("{}", busyguard::policy::keys::markdown_reference());
        return Ok(());
    }
    let out = PathBuf::from(arg);
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = busyguard::cli::Cli::command();
    man_pages(&cmd, "busyguard", &man)?;
    std::fs::write(man.join("busyguard-policy.5"), policy_page())?;
    for (shell, file) in [
        (Shell::Bash, "busyguard.bash"),
        (Shell::Zsh, "_busyguard"),
        (Shell::Fish, "busyguard.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "busyguard", &mut buf);
        std::fs::write(completions.join(file), buf)?;
    }
    Ok(())
}

/// A page for the command and one for each subcommand, named as git names them
/// (`busyguard-audit-verify.1`): clap's sections, then the ones an operator looks for (EXIT
/// STATUS, SIGNALS, FILES, ENVIRONMENT, EXAMPLES, SEE ALSO) from [`sections`].
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    // clap names are `&'static str` without its `string` feature; this program runs once.
    let page: &'static str = Box::leak(name.to_string().into_boxed_str());
    let bin: &'static str = Box::leak(name.replace('-', " ").into_boxed_str());
    // No `help` subcommand: its page would not exist (`--help` says the same).
    let cmd = cmd
        .clone()
        .name(page)
        .bin_name(bin)
        .disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut buf)?;
    }
    let mut page_text = String::from_utf8(buf).expect("clap_mangen writes UTF-8");
    page_text.push_str(&sections(name));
    if cmd.get_version().is_some() {
        let mut version = Vec::new();
        man.render_version_section(&mut version)?;
        page_text.push_str(&String::from_utf8_lossy(&version));
    }
    std::fs::write(dir.join(format!("{name}.1")), page_text)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// The sections clap cannot know, per page, in roff.
fn sections(name: &str) -> String {
    let steer = "busyguard\\-pause(1), busyguard\\-resume(1), busyguard\\-hold(1), \
                 busyguard\\-release(1), busyguard\\-approve(1), busyguard\\-ps(1)";
    let socket = ".TP\n\\fI<state\\-dir>/control.sock\\fR\nThe running daemon's control socket \
                  (mode 0660, group BUSYGUARD_CONTROL_GROUP when set).\n";
    let state_env = ".TP\n\\fBSTATE_DIRECTORY\\fR\nThe default \\-\\-state\\-dir (systemd sets it); \
                     else /var/lib/busyguard.\n";
    let no_color = ".TP\n\\fBNO_COLOR\\fR\nWhen set (and not empty), no colour: \
                    state words are coloured only when stdout is a terminal.\n";
    let (exit, signals, files, env, examples, see): (&str, &str, String, String, &str, String) =
        match name {
            "busyguard" => (
                "0 on success; 1 when a command's check or request failed; 2 on bad arguments.",
                "",
                ".TP\n/etc/busyguard/policies/\nPolicy files, one per Redis instance \
                 (busyguard\\-policy(5)).\n.TP\n/var/lib/busyguard/audit.jsonl\nThe audit trail.\n"
                    .into(),
                format!("{state_env}{no_color}"),
                "busyguard check \\-\\-credentials /etc/busyguard/credentials /etc/busyguard/policies\n.br\n\
                 busyguard status \\-\\-credentials /etc/busyguard/credentials /etc/busyguard/policies\n.br\nbusyguard ps",
                "busyguard\\-run(1), busyguard\\-check(1), busyguard\\-status(1), busyguard\\-ps(1), \
                 busyguard\\-simulate(1), busyguard\\-audit(1), busyguard\\-policy(5)"
                    .into(),
            ),
            "busyguard-run" => (
                "0 after a clean stop (SIGTERM, SIGINT); 2 when no policy was valid at start, or the state \
                 directory is held by another run. A start with some invalid files supervises the valid \
                 ones and names each refused file and its first error (in the log, and in systemd's \
                 STATUS=).",
                ".TP\nSIGHUP\nReopen the audit trail (after logrotate) and reload every policy: a file that \
                 no longer validates keeps its previous version running.\n.TP\nSIGTERM, SIGINT\nStop: \
                 every watchdog ends, the trail is flushed, exit 0.\n",
                format!(
                    ".TP\n\\fI<state\\-dir>/audit.jsonl\\fR\nThe hash\\-chained audit trail (append only).\n\
                     {socket}.TP\n/etc/busyguard/policies/\nThe policies the unit loads.\n"
                ),
                format!(
                    "{state_env}.TP\n\\fBCREDENTIALS_DIRECTORY\\fR\nWhere systemd's LoadCredential= puts \
                     secrets; policies name ${{CREDENTIALS_DIRECTORY}}/NAME.\n.TP\n\\fBNOTIFY_SOCKET\\fR, \
                     \\fBWATCHDOG_USEC\\fR\nsystemd's readiness and watchdog.\n.TP\n\\fBRUST_LOG\\fR\nThe log \
                     filter when \\-\\-log\\-level is not given.\n.TP\n\\fBBUSYGUARD_CONTROL_GROUP\\fR\nThe \
                     group given the control socket.\n"
                ),
                "busyguard run \\-\\-policies /etc/busyguard/policies \\-\\-metrics 127.0.0.1:9754\n.br\n\
                 busyguard run \\-\\-policies staging.yaml \\-\\-dry\\-run \\-\\-state\\-dir /tmp/bg",
                format!("busyguard\\-check(1), busyguard\\-policy(5), {steer}"),
            ),
            "busyguard-check" => (
                "0 when every file is valid; 1 when any is not (each error printed as FILE:LINE:COL: \
                 message); 2 on bad arguments.",
                "",
                ".TP\n/etc/busyguard/policies/\nWhere the unit's policies live.\n".into(),
                ".TP\n\\fBCREDENTIALS_DIRECTORY\\fR\nRead by policies that name it; see \\-\\-credentials.\n"
                    .into(),
                "busyguard check \\-\\-credentials /etc/busyguard/credentials /etc/busyguard/policies\n.br\n\
                 busyguard check \\-\\-syntax\\-only policies/",
                "busyguard\\-policy(5), busyguard\\-run(1)".into(),
            ),
            "busyguard-status" => (
                "0 when every instance answered; 1 otherwise.",
                "",
                format!("{socket}.TP\n\\fI<state\\-dir>/audit.jsonl\\fR\nRead for the slowest scripts of the last day.\n"),
                format!("{state_env}{no_color}"),
                "busyguard status \\-\\-credentials /etc/busyguard/credentials /etc/busyguard/policies\n.br\n\
                 busyguard status \\-\\-credentials /etc/busyguard/credentials \\-\\-json \
                 /etc/busyguard/policies/cache.yaml | jq .",
                "busyguard\\-check(1), busyguard\\-ps(1), busyguard\\-policy(5)".into(),
            ),
            "busyguard-simulate" => (
                "0 when the scenario or trail was replayed; 1 on a bad policy, scenario or trail.",
                "",
                ".TP\n/usr/share/doc/busyguard/examples/scenarios/\nExample scenarios, each with the \
                 output it is expected to print (*.expected).\n".into(),
                String::new(),
                "busyguard simulate /usr/share/doc/busyguard/examples/scenarios/cache.yaml \
                 /usr/share/doc/busyguard/examples/scenarios/unkillable.txt\n.br\n\
                 busyguard simulate /etc/busyguard/policies/cache.yaml \\-\\-trail /var/lib/busyguard/audit.jsonl",
                "busyguard\\-policy(5), busyguard\\-audit\\-show(1)".into(),
            ),
            "busyguard-audit" | "busyguard-audit-verify" | "busyguard-audit-show" => (
                if name == "busyguard-audit-verify" {
                    "0 when the chain is intact; 1 when it is broken (the first bad line is named)."
                } else {
                    "0; 1 for an unknown incident or instance, or a file that cannot be read."
                },
                "",
                ".TP\n/var/lib/busyguard/audit.jsonl\nThe trail; logrotate keeps audit.jsonl.1, ... \
                 (give them oldest first).\n".into(),
                String::new(),
                "busyguard audit verify /var/lib/busyguard/audit.jsonl.1 /var/lib/busyguard/audit.jsonl\n.br\n\
                 busyguard audit show /var/lib/busyguard/audit.jsonl \\-\\-instance cache\\-01 \\-\\-since 2h\n.br\n\
                 busyguard audit show /var/lib/busyguard/audit.jsonl \\-\\-all",
                "busyguard(1), busyguard\\-audit\\-verify(1), busyguard\\-audit\\-show(1), busyguard\\-run(1)".into(),
            ),
            _ => (
                // pause, resume, hold, release, approve, ps: requests to the running daemon.
                "0 when the daemon applied (or answered) the request; 1 when it refused it or no daemon \
                 runs on the state directory.",
                "",
                socket.into(),
                match name {
                    "busyguard-ps" => format!("{state_env}{no_color}"),
                    _ => state_env.into(),
                },
                match name {
                    "busyguard-pause" => "busyguard pause cache\\-01 \\-\\-for 30m \\-\\-reason \"failover drill\"",
                    "busyguard-hold" => "busyguard hold cache\\-01 \\-\\-reason \"looking at it\"",
                    "busyguard-approve" => "busyguard approve cache\\-01",
                    "busyguard-ps" => "busyguard ps\n.br\nbusyguard ps \\-\\-json",
                    _ => "busyguard resume \\-\\-all",
                },
                format!("busyguard\\-run(1), {steer}"),
            ),
        };
    let mut text = format!(".SH \"EXIT STATUS\"\n{exit}\n");
    if !signals.is_empty() {
        text.push_str(&format!(".SH SIGNALS\n{signals}"));
    }
    text.push_str(&format!(".SH FILES\n{files}"));
    if !env.is_empty() {
        text.push_str(&format!(".SH ENVIRONMENT\n{env}"));
    }
    if name == "busyguard-simulate" {
        text.push_str(SCENARIO_GRAMMAR);
    }
    text.push_str(&format!(
        ".SH EXAMPLES\n.nf\n{examples}\n.fi\n.SH \"SEE ALSO\"\n{see}\n"
    ));
    text
}

/// busyguard-simulate(1)'s scenario grammar: what `simulate::scenario` parses.
const SCENARIO_GRAMMAR: &str = ".SH \"SCENARIO FILES\"\n\
One observation a line, in time order; TIME is a duration from the start (\\fB0s\\fR, \\fB1.5s\\fR, \
\\fB200ms\\fR); \\fB#\\fR starts a comment. A line the policy's timeline never reaches is an error.\n\
.TP\nTIME \\fBpong\\fR [threshold=MS version=V role=master|slave replicas=N aof=yes|no save=TEXT \
changes=N run_id=ID cluster=yes offset=N replica=HOST:PORT[/LAG_S]...]\nA healthy reply, with the \
snapshot's facts (a replica is online at the primary's offset).\n\
.TP\nTIME \\fBbusy\\fR script|function|module|unknown\nA BUSY reply of that form.\n\
.TP\nTIME \\fBfunction\\fR NAME\nWhat FUNCTION STATS answers after a \\fBbusy function\\fR: the running \
function, which script rules (on_busy.scripts) match.\n\
.TP\nTIME \\fBkill\\fR ok|unkillable|replicated|notbusy|lost\nThe answer to the kill.\n\
.TP\nTIME \\fBshutdown\\fR confirmed|refused|failed\nThe end of a shutdown.\n\
.TP\nTIME \\fBfailover\\fR promoted [HOST:PORT]|failed\nThe end of a failover.\n\
.TP\nTIME \\fBsilent\\fR DURATION, TIME \\fBunreachable\\fR, TIME \\fBloading\\fR, TIME \\fBfault\\fR TEXT\n\
Silence, no connection, a loading server, a configuration fault.\n\
.TP\nTIME \\fBpause\\fR DURATION, \\fBresume\\fR, \\fBhold\\fR, \\fBrelease\\fR, \\fBapprove\\fR\n\
An operator's command.\n";

/// busyguard-policy(5): every key with its default, bounds and meaning.
fn policy_page() -> String {
    let esc = |t: &str| t.replace('\\', "\\\\").replace('-', "\\-").replace('`', "");
    let mut page = String::from(
        ".TH BUSYGUARD-POLICY 5 \"\" \"busyguard\" \"File formats\"\n\
         .SH NAME\nbusyguard\\-policy \\- busyguard's per-instance policy files (YAML)\n\
         .SH DESCRIPTION\nOne YAML file per Redis instance, in the folder given to \
         \\fBbusyguard run \\-\\-policies\\fR (*.yaml, *.yml). Check them with \
         \\fBbusyguard check\\fR. Secrets come from files (\\fI*_file\\fR, which may name \
         ${CREDENTIALS_DIRECTORY}/NAME under systemd) or the environment (\\fI*_env\\fR).\n\
         .SH KEYS\n",
    );
    for key in busyguard::policy::keys::KEYS {
        page.push_str(&format!(
            ".TP\n\\fB{}\\fR (default: {})\n{}",
            esc(key.path),
            esc(&key.default_text()),
            esc(key.doc)
        ));
        if let Some(bounds) = key.bounds_text() {
            page.push_str(&format!(" Bounds: {}.", esc(&bounds)));
        }
        page.push('\n');
    }
    page.push_str(".SH SEE ALSO\n\\fBbusyguard\\fR(1), \\fBbusyguard\\-check\\fR(1)\n");
    page
}
