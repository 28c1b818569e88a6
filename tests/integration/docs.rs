//! The README and docs/ as a user reads them: a guide short enough to read, links that lead
//! somewhere, the policy reference generated from the validator's own key table, and man pages
//! with the sections an operator looks for.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every Markdown file a user reads: the README, the CHANGELOG and everything under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

/// The README is a guide (a few hundred lines), and the reference lives in docs/.
#[test]
fn the_readme_is_a_guide_under_four_hundred_lines() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let lines = readme.lines().count();
    assert!(lines < 400, "README.md has {lines} lines");
    for must in [
        "scripts/demo",
        "scripts/test",
        "What the defaults do to a server",
        "What each `then` does to a server",
        "Page from one path",
    ] {
        assert!(readme.contains(must), "README lacks `{must}`");
    }
}

/// Every relative link in the README and docs/ names a file that exists (and an anchor, a
/// heading of that file).
#[test]
fn every_link_in_the_docs_leads_somewhere() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let base = page.parent().unwrap_or(Path::new(""));
        for link in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                base.join(file)
            };
            assert!(
                target.exists(),
                "{}: the link `{link}` leads nowhere",
                page.display()
            );
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings: Vec<String> = std::fs::read_to_string(&target)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|h| slug(h.trim_start_matches('#').trim()))
                    .collect();
                assert!(
                    headings.iter().any(|h| h == anchor),
                    "{}: `{link}` names no heading of {}",
                    page.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} links found");
}

/// GitHub's anchor of a heading: lower case, spaces as `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// docs/policy-reference.md is exactly what the key table generates (the same table the
/// validator takes its defaults and bounds from, and `busyguard-policy(5)` is made of).
#[test]
fn the_policy_reference_page_is_the_generated_one() {
    let page = std::fs::read_to_string("docs/policy-reference.md").unwrap();
    assert_eq!(
        page,
        busyguard::policy::keys::markdown_reference(),
        "docs/policy-reference.md is stale: cargo run -q --example gen-docs -- --policy-reference > docs/policy-reference.md"
    );
    for key in busyguard::policy::keys::KEYS {
        assert!(
            page.contains(&format!("| `{}` |", key.path)),
            "{}",
            key.path
        );
    }
}

/// Every generated man page has the sections an operator looks for, text for every argument,
/// and names only pages that exist; simulate's page holds the scenario grammar.
#[test]
fn every_man_page_has_its_sections_and_no_dangling_reference() {
    let out = tempfile::tempdir().unwrap();
    // The example `cargo test` built beside this binary (target/<profile>/examples/): running
    // cargo from a test would build it again in another profile, a minute on two cores.
    let built = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("examples").join("gen-docs"))
        .filter(|p| p.exists());
    let status = match built {
        Some(gen_docs) => Command::new(gen_docs).arg(out.path()).status().unwrap(),
        None => Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--offline", "--example", "gen-docs", "--"])
            .arg(out.path())
            .status()
            .unwrap(),
    };
    assert!(status.success());
    let man = out.path().join("man");
    let names: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 14, "{names:?}");
    for name in names.iter().filter(|n| n.ends_with(".1")) {
        let page = std::fs::read_to_string(man.join(name)).unwrap();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH \"EXIT STATUS\"",
            ".SH FILES",
            ".SH EXAMPLES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(section), "{name} has no {section}");
        }
        // Each page named in SEE ALSO or SUBCOMMANDS exists.
        for word in page.split(|c: char| c.is_whitespace() || c == ',') {
            let word = word
                .replace("\\-", "-")
                .replace("\\fB", "")
                .replace("\\fR", "");
            if let Some(page_name) = word
                .strip_suffix("(1)")
                .filter(|w| w.starts_with("busyguard"))
            {
                assert!(
                    names.contains(&format!("{page_name}.1")),
                    "{name} names {page_name}(1), which does not exist"
                );
            }
        }
        // Every option and argument has its text: a `.TP` term followed by a line of words.
        let lines: Vec<&str> = page.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == ".TP" {
                let text = lines.get(i + 2).copied().unwrap_or("");
                assert!(
                    !text.is_empty() && !text.starts_with('.'),
                    "{name}: `{}` has no text",
                    lines.get(i + 1).copied().unwrap_or("")
                );
            }
        }
    }
    let run = std::fs::read_to_string(man.join("busyguard-run.1")).unwrap();
    assert!(
        run.contains(".SH SIGNALS") && run.contains("SIGHUP"),
        "{run}"
    );
    let simulate = std::fs::read_to_string(man.join("busyguard-simulate.1")).unwrap();
    for step in [
        "pong", "busy", "kill", "shutdown", "failover", "silent", "approve",
    ] {
        assert!(simulate.contains(&format!("\\fB{step}\\fR")), "{step}");
    }
    assert!(names.contains(&"busyguard-policy.5".to_string()));
}

/// The README's first-run policy (step 2) is the one its rehearsal (step 4) runs: the scenario
/// `first-run.txt` and its expected output are checked against that very file.
#[test]
fn the_readmes_first_run_policy_is_the_rehearsed_one() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme
        .find("# /etc/busyguard/policies/local-redis.yaml\n")
        .expect("the README's policy block");
    let block = &readme[start..];
    let block = &block[block.find('\n').unwrap() + 1..block.find("```").unwrap()];
    let rehearsed = std::fs::read_to_string("examples/scenarios/first-run.yaml").unwrap();
    let rehearsed: String = rehearsed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(block, rehearsed);
    assert!(readme.contains("/usr/share/doc/busyguard/examples/scenarios/first-run.txt"));
}
