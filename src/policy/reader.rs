//! Reading a policy file's YAML tree, schema-agnostic: sections with their unknown and
//! duplicate keys reported, typed scalars (strings, choices, booleans, counts, durations),
//! secrets from files or the environment, and hints for typos. Defaults and bounds come from
//! the key table ([`super::keys`]); which keys make a policy is [`super::schema`]'s to say.

use std::path::PathBuf;
use std::time::Duration;

use super::keys;
use super::yaml::{self, Key, Node, Pos};
use super::{Diagnostic, Secret};

/// The keys of one mapping, after unknown and duplicate keys were reported.
pub(super) struct Section<'n> {
    /// The section's path in the key table (`notify[].slack`); "" for the top level.
    pub(super) name: String,
    pub(super) entries: Vec<(&'n Key, &'n Node)>,
}

impl<'n> Section<'n> {
    /// Where `key` itself is written, for errors about a section's missing parts.
    pub(super) fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k.pos)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, n)| *n)
    }

    /// `section.key`, the name errors use.
    pub(super) fn path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name.replace("[]", ""))
        }
    }

    /// `section.key` as the key table writes it (`notify[].slack.max_age`).
    fn table_path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    /// An absent section: every key takes its default.
    pub(super) fn empty(name: &str) -> Section<'n> {
        Section {
            name: name.to_string(),
            entries: Vec::new(),
        }
    }
}

/// Reads one file, collecting every error and warning with its position.
pub(super) struct Reader {
    pub(super) file: PathBuf,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
    /// Where secret and certificate files and variables are read from.
    pub(super) sources: super::Sources,
}

impl Reader {
    fn diag(&self, pos: Pos, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message,
        }
    }

    pub(super) fn error(&mut self, pos: Pos, message: String) {
        let d = self.diag(pos, message);
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, pos: Pos, message: String) {
        let d = self.diag(pos, message);
        self.warnings.push(d);
    }

    /// Read a mapping named `section` (its path in `keys`), reporting unknown and duplicate keys.
    pub(super) fn section<'n>(&mut self, node: &'n Node, section: &str) -> Section<'n> {
        let mut out = Section {
            name: section.to_string(),
            entries: Vec::new(),
        };
        let shown = if section.is_empty() {
            "a policy file".to_string()
        } else {
            format!("`{}`", section.replace("[]", ""))
        };
        let Node::Map { entries, .. } = node else {
            self.error(
                node.pos(),
                format!("{shown} must be a mapping of keys, found {}", node.kind()),
            );
            return out;
        };
        let allowed = keys::children(section);
        for (key, value) in entries {
            if let Some((first, _)) = out.entries.iter().find(|(k, _)| k.name == key.name) {
                let line = first.pos.line;
                self.error(
                    key.pos,
                    format!(
                        "duplicate key `{}` (first set at line {line}); keep one",
                        out.path(&key.name)
                    ),
                );
                continue;
            }
            if !allowed.contains(&key.name.as_str()) {
                let msg = unknown_key_message(&key.name, section, &allowed);
                self.error(key.pos, msg);
                continue;
            }
            out.entries.push((key, value));
        }
        out
    }

    /// A scalar's text, or an error naming what was found instead.
    pub(super) fn scalar<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        expected: &str,
    ) -> Option<&'n str> {
        match node {
            Node::Scalar { value, quoted, .. } if *quoted || !yaml::is_null(value) => {
                Some(value.as_str())
            }
            other => {
                self.error(
                    other.pos(),
                    format!("`{path}` must be {expected}, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        self.scalar(node, path, "a string").map(str::to_string)
    }

    pub(super) fn choice(
        &mut self,
        node: &Node,
        path: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let listed = options
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let value = self.scalar(node, path, &format!("one of {listed}"))?;
        if let Some(found) = options.iter().find(|o| **o == value) {
            return Some(found);
        }
        let hint = closest(value, options)
            .map(|c| format!(", did you mean `{c}`?"))
            .unwrap_or_default();
        self.error(
            node.pos(),
            format!("`{path}` must be one of {listed}; found `{value}`{hint}"),
        );
        None
    }

    pub(super) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if value == "true" || value == "false" => Some(value == "true"),
            other => {
                let found = describe(other);
                self.error(
                    other.pos(),
                    format!("`{path}` must be `true` or `false`, found {found}"),
                );
                None
            }
        }
    }

    /// A whole number (0 or more).
    pub(super) fn count(&mut self, node: &Node, path: &str) -> Option<u64> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if value.parse::<u64>().is_ok() => value.parse().ok(),
            other => {
                let found = describe(other);
                self.error(
                    other.pos(),
                    format!("`{path}` must be a whole number (0 or more), found {found}"),
                );
                None
            }
        }
    }

    /// A humantime duration within the key's bounds (`table` is its path in the key table).
    pub(super) fn duration(&mut self, node: &Node, path: &str, table: &str) -> Option<Duration> {
        let text = self.scalar(node, path, "a duration such as `100ms` or `2m`")?;
        let pos = node.pos();
        let text = text.trim();
        if text.starts_with('-') {
            self.error(
                pos,
                format!("`{path}` must not be negative, found `{text}`"),
            );
            return None;
        }
        if text.parse::<f64>().is_ok() {
            self.error(
                pos,
                format!("`{path}`: `{text}` has no unit; write e.g. `{text}ms` or `{text}s`"),
            );
            return None;
        }
        let d = match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    pos,
                    format!(
                        "`{path}`: `{text}` is not a duration ({e}); write e.g. `500ms`, `5s`, `2m`"
                    ),
                );
                return None;
            }
        };
        let key = keys::get(table);
        if let Some(keys::Bounds::Duration { min, max }) = key.map(|k| k.bounds)
            && (d < min || d > max)
        {
            let message = if d.is_zero() {
                format!("`{path}` must be greater than zero")
            } else {
                let bounds = key.and_then(keys::KeyDoc::bounds_text).unwrap_or_default();
                format!("`{path}` must be {bounds}, found `{text}`")
            };
            self.error(pos, message);
            return None;
        }
        Some(d)
    }

    /// The key table's entry of `s.key`; every key read through the helpers below has one.
    fn key(s: &Section, key: &str) -> &'static keys::KeyDoc {
        let path = s.table_path(key);
        keys::get(&path).unwrap_or_else(|| panic!("`{path}` is missing from the key table"))
    }

    /// A duration key, or its default from the key table.
    pub(super) fn opt_duration(&mut self, s: &Section, key: &str) -> Duration {
        let doc = Reader::key(s, key);
        let keys::Default::Duration(default) = doc.default else {
            panic!("`{}` has no duration default", doc.path)
        };
        match s.get(key) {
            None => default,
            Some(n) => self.duration(n, &s.path(key), doc.path).unwrap_or(default),
        }
    }

    /// A boolean key, or its default from the key table.
    pub(super) fn opt_bool(&mut self, s: &Section, key: &str) -> bool {
        let doc = Reader::key(s, key);
        let default = matches!(doc.default, keys::Default::Bool(true));
        s.get(key)
            .and_then(|n| self.bool(n, &s.path(key)))
            .unwrap_or(default)
    }

    /// A count key; its default from the key table (`None` when it is unset by default).
    pub(super) fn opt_count(&mut self, s: &Section, key: &str) -> Option<u64> {
        let doc = Reader::key(s, key);
        let default = match doc.default {
            keys::Default::Count(n) => Some(n),
            _ => None,
        };
        let Some(node) = s.get(key) else {
            return default;
        };
        let n = self.count(node, &s.path(key))?;
        if let keys::Bounds::Count { max } = doc.bounds
            && n > max
        {
            let bounds = doc.bounds_text().unwrap_or_default();
            let path = s.path(key);
            self.error(node.pos(), format!("`{path}` must be {bounds}, found {n}"));
            return default;
        }
        Some(n)
    }

    /// A text key within its length bound.
    pub(super) fn bounded_string(&mut self, s: &Section, key: &str, node: &Node) -> Option<String> {
        let text = self.string(node, &s.path(key))?;
        let doc = Reader::key(s, key);
        if let keys::Bounds::Chars { max } = doc.bounds
            && text.chars().count() > max
        {
            let bounds = doc.bounds_text().unwrap_or_default();
            let (path, n) = (s.path(key), text.chars().count());
            self.error(node.pos(), format!("`{path}` must be {bounds}, found {n}"));
            return None;
        }
        Some(text)
    }

    /// One of `options`, or the key table's default word.
    pub(super) fn opt_choice(&mut self, s: &Section, key: &str) -> &'static str {
        let doc = Reader::key(s, key);
        let keys::Default::Word(default) = doc.default else {
            panic!("`{}` has no default word", doc.path)
        };
        let keys::Bounds::Words(options) = doc.bounds else {
            panic!("`{}` is not a choice of words", doc.path)
        };
        s.get(key)
            .and_then(|n| self.choice(n, &s.path(key), options))
            .unwrap_or(default)
    }

    /// A text key, or the key table's default word.
    pub(super) fn opt_word(&mut self, s: &Section, key: &str) -> Option<String> {
        match (s.get(key), Reader::key(s, key).default) {
            (Some(n), _) => self.string(n, &s.path(key)),
            (None, keys::Default::Word(w)) => Some(w.to_string()),
            (None, _) => None,
        }
    }

    /// A sub-section that may be absent (then all its defaults apply).
    pub(super) fn optional_section<'n>(&mut self, parent: &Section<'n>, key: &str) -> Section<'n> {
        let name = if parent.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", parent.name)
        };
        match parent.get(key) {
            Some(n) => self.section(n, &name),
            None => Section::empty(&name),
        }
    }

    /// A secret given as `<base>_file`, `<base>_env` or (as `inline` allows) `<base>` itself.
    /// `None` on an error; `Some(None)` when none of the keys is set.
    pub(super) fn secret(
        &mut self,
        s: &Section,
        base: &str,
        inline: Inline,
    ) -> Option<Option<Secret>> {
        let names = [
            base.to_string(),
            format!("{base}_file"),
            format!("{base}_env"),
        ];
        let given: Vec<(&str, &Node)> = names
            .iter()
            .filter_map(|n| s.get(n).map(|node| (n.as_str(), node)))
            .collect();
        let (key, node) = match given.as_slice() {
            [] => return Some(None),
            [one] => *one,
            [.., (_, last)] => {
                let listed = given
                    .iter()
                    .map(|(k, _)| format!("`{}`", s.path(k)))
                    .collect::<Vec<_>>()
                    .join(" and ");
                self.error(last.pos(), format!("set only one of {listed}"));
                return None;
            }
        };
        let path = s.path(key);
        let value = self.string(node, &path)?;
        if key == base {
            let warned = match inline {
                Inline::Refused => return None,
                Inline::Secret => true,
                Inline::UrlIfCredentialed => url_carries_credential(&value),
            };
            if warned {
                self.warn(
                    node.pos(),
                    format!("`{path}` holds a secret inline; prefer `{path}_file` or `{path}_env`"),
                );
            }
            return Some(Some(Secret::new(value)));
        }
        if self.sources == super::Sources::Skip {
            return Some(Some(Secret::unread()));
        }
        let read = if key.ends_with("_file") {
            read_file(&value, &path, &self.sources).map(|t| {
                let text = String::from_utf8_lossy(&t);
                text.lines().next().unwrap_or("").trim().to_string()
            })
        } else {
            std::env::var(&value)
                .map_err(|_| format!("`{path}`: environment variable `{value}` is not set"))
        };
        match read {
            Ok(secret) if secret.is_empty() => {
                self.error(node.pos(), format!("`{path}`: `{value}` is empty"));
                None
            }
            Ok(secret) => Some(Some(Secret::new(secret))),
            Err(msg) => {
                self.error(node.pos(), msg);
                None
            }
        }
    }

    /// The bytes of the file named by `key` (`${CREDENTIALS_DIRECTORY}` expanded, at most
    /// [`super::SECRET_LIMIT`]): `None` when the key is absent or the file cannot be read (an
    /// error naming the key and the file).
    pub(super) fn file_contents(&mut self, s: &Section, key: &str) -> Option<Vec<u8>> {
        let node = s.get(key)?;
        let path = s.path(key);
        let value = self.string(node, &path)?;
        if self.sources == super::Sources::Skip {
            return None;
        }
        read_file(&value, &path, &self.sources)
            .map_err(|msg| self.error(node.pos(), msg))
            .ok()
    }

    pub(super) fn required_secret(
        &mut self,
        s: &Section,
        base: &str,
        at: Pos,
        inline: Inline,
    ) -> Option<Secret> {
        match self.secret(s, base, inline) {
            Some(Some(secret)) => Some(secret),
            Some(None) => {
                let p = s.path(base);
                self.error(at, format!("missing `{p}` (or `{p}_file`, `{p}_env`)"));
                None
            }
            None => None,
        }
    }

    pub(super) fn http_url(&mut self, node: &Node, path: &str) -> Option<String> {
        let url = self.string(node, path)?;
        if url.starts_with("https://") || url.starts_with("http://") {
            Some(url)
        } else {
            self.error(
                node.pos(),
                format!("`{path}` must be an http:// or https:// URL"),
            );
            None
        }
    }
}

/// The file a `*_file` key names, `${CREDENTIALS_DIRECTORY}` expanded; errors name the key.
fn read_file(value: &str, path: &str, sources: &super::Sources) -> Result<Vec<u8>, String> {
    let file = expand_credentials(value, sources).map_err(|msg| format!("`{path}`: {msg}"))?;
    super::read_limited(std::path::Path::new(&file), super::SECRET_LIMIT)
        .map_err(|e| format!("`{path}`: cannot read `{file}`: {e}"))
}

/// systemd's `LoadCredential=` puts secrets in `$CREDENTIALS_DIRECTORY`; a secret file may be
/// named as `${CREDENTIALS_DIRECTORY}/name`. Outside the service (`check`, `status` in an admin
/// shell), `--credentials DIR` names the folder `LoadCredential=` takes them from.
pub(super) fn expand_credentials(path: &str, sources: &super::Sources) -> Result<String, String> {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    if !path.contains(VAR) {
        return Ok(path.to_string());
    }
    if let super::Sources::CredentialsDir(dir) = sources {
        return Ok(path.replace(VAR, &dir.display().to_string()));
    }
    match std::env::var("CREDENTIALS_DIRECTORY") {
        Ok(dir) => Ok(path.replace(VAR, &dir)),
        Err(_) => Err(format!(
            "`{path}` uses {VAR}, which systemd sets only inside the service (LoadCredential=); outside it, name the folder the credentials come from: `busyguard check --credentials /etc/busyguard/credentials ...` (or `--syntax-only`)"
        )),
    }
}

/// How a scalar looks in a message: `one` for text, `a list` for the rest.
fn describe(node: &Node) -> String {
    match node {
        Node::Scalar {
            value,
            quoted: false,
            ..
        } if !yaml::is_null(value) => format!("`{value}`"),
        Node::Scalar {
            value,
            quoted: true,
            ..
        } => format!("the string \"{value}\""),
        other => other.kind().to_string(),
    }
}

fn unknown_key_message(name: &str, section: &str, allowed: &[&'static str]) -> String {
    let place = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{}`", section.replace("[]", ""))
    };
    if let Some(near) = closest(name, allowed) {
        return format!("unknown key `{name}` {place}, did you mean `{near}`?");
    }
    let homes = keys::sections_holding(name);
    if let Some(home) = homes.first() {
        return format!(
            "unknown key `{name}` {place}; it belongs under `{}`",
            home.replace("[]", "")
        );
    }
    let listed = allowed
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("unknown key `{name}` {place}; expected one of {listed}")
}

/// The closest candidate by edit distance, when it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        assert_eq!(
            closest("kil_after", &["kill_after", "on_unkillable"]),
            Some("kill_after")
        );
        assert_eq!(closest("zzz", &["kill_after"]), None);
    }
}

/// Whether a secret may be written inline, and when that is worth a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inline {
    /// Only `_file` or `_env` (a password).
    Refused,
    /// Accepted, with a warning (a routing key, a Slack URL: its path is the credential).
    Secret,
    /// A receiver's URL: a secret only when it carries a credential (a user and password, a
    /// query string, a fragment); a plain `http://host/path` is no secret and is not warned of.
    UrlIfCredentialed,
}

/// Whether `url` holds anything a reader should not see: userinfo, a query or a fragment.
fn url_carries_credential(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@') || rest.contains('?') || rest.contains('#')
}
