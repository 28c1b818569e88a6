//! Man pages and shell completions, generated from the CLI definition (`busyguard::cli::Cli`)
//! and the policy key table (`busyguard::policy::keys`), so they never drift from the binary.
//! `scripts/package` runs it: `cargo run --example gen-docs -- OUT_DIR` writes
//! `OUT_DIR/man/*.1`, `OUT_DIR/man/busyguard-policy.5` and `OUT_DIR/completions/{busyguard.bash,
//! _busyguard,busyguard.fish}`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: gen-docs OUT_DIR"));
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
/// (`busyguard-audit-verify.1`).
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    // clap names are `&'static str` without its `string` feature; this program runs once.
    let page: &'static str = Box::leak(name.to_string().into_boxed_str());
    let bin: &'static str = Box::leak(name.replace('-', " ").into_boxed_str());
    let cmd = cmd.clone().name(page).bin_name(bin);
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

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
