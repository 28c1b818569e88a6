//! `busyguard check`: one line per valid file, one line per error in an invalid one.

use std::io::Write;
use std::path::PathBuf;

use crate::policy;

/// Print the report for `paths` to `out`; true when every file is valid.
pub fn check(
    paths: &[PathBuf],
    sources: &policy::Sources,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let report = policy::load_with(paths, sources);
    for (file, why) in &report.skipped {
        writeln!(out, "{}: skipped: {why}", file.display())?;
    }
    for file in &report.files {
        match report.rejected.iter().find(|(f, _)| f == file) {
            Some((_, diags)) => {
                for d in diags {
                    writeln!(out, "{d}")?;
                }
            }
            None => {
                match sources {
                    policy::Sources::Skip => writeln!(
                        out,
                        "{}: ok (syntax only: secrets and certificates not read)",
                        file.display()
                    )?,
                    _ => writeln!(out, "{}: ok", file.display())?,
                }
                for w in report.warnings.iter().filter(|w| &w.file == file) {
                    writeln!(
                        out,
                        "{}:{}:{}: warning: {}",
                        w.file.display(),
                        w.line,
                        w.col,
                        w.message
                    )?;
                }
            }
        }
    }
    if report.files.is_empty() {
        writeln!(
            out,
            "no policy files found (a folder is searched for *.yaml and *.yml)"
        )?;
        return Ok(false);
    }
    Ok(report.rejected.is_empty())
}
