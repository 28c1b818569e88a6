//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! Policy files must report every mistake with its line and column, including mistakes serde
//! cannot see (a duplicate key, an unknown key next to a valid one). So the parser's event stream
//! is folded into this small tree first, and `policy` validates the tree, collecting every error
//! instead of stopping at the first. Anchors, aliases and tags are refused: a safety policy should
//! read the same to a person as to the program.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A place in the source: 1-based line and 1-based column, as editors count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A mapping key with its position, so an error about the key can point at it.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// One node of the document.
#[derive(Clone, Debug)]
pub enum Node {
    /// A scalar as written; `quoted` tells `"5"` (a string) from `5`.
    Scalar {
        value: String,
        quoted: bool,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    /// Entries in file order, duplicates kept: the validator reports them.
    Map {
        entries: Vec<(Key, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// What the node is, in the words an error message uses.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { value, quoted, .. } if !quoted && is_null(value) => "null",
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// `~`, `null` and an empty value are YAML's null.
pub fn is_null(plain: &str) -> bool {
    matches!(plain, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error with where the parser stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document. `Ok(None)` for a file with no document at all.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        let refuse = |what: &str| SyntaxError {
            pos,
            message: format!("{what} are not supported in policy files; write the value out"),
        };
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "one policy per file: this file holds a second YAML document"
                            .into(),
                    });
                }
                continue;
            }
            Event::Alias(_) => return Err(refuse("aliases")),
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 {
                    return Err(refuse("anchors"));
                }
                if tag.is_some() {
                    return Err(refuse("tags"));
                }
                Node::Scalar {
                    value: value.into_owned(),
                    quoted: style != ScalarStyle::Plain,
                    pos,
                }
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if anchor != 0 || tag.is_some() =>
            {
                return Err(refuse(if anchor != 0 { "anchors" } else { "tags" }));
            }
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq(Vec::new(), pos));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(Vec::new(), None, pos));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(items, pos)) => Node::Seq { items, pos },
                Some(Frame::Map(entries, _, pos)) => Node::Map { entries, pos },
                None => continue,
            },
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => match node {
                    Node::Scalar { value, pos, .. } => *pending = Some(Key { name: value, pos }),
                    other => {
                        return Err(SyntaxError {
                            pos: other.pos(),
                            message: "a mapping key must be a plain word".into(),
                        });
                    }
                },
            },
        }
    }
    Ok(root)
}

/// A collection still being read.
enum Frame {
    Seq(Vec<Node>, Pos),
    /// Entries so far, the key waiting for its value, and where the mapping starts.
    Map(Vec<(Key, Node)>, Option<Key>, Pos),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicates_and_positions() {
        let doc = parse("a: 1\nb:\n  c: x\na: 2\n").unwrap().unwrap();
        let Node::Map { entries, .. } = doc else {
            panic!("not a map")
        };
        let names: Vec<_> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "a"]);
        assert_eq!(entries[2].0.pos, Pos { line: 4, col: 1 });
        let Node::Map { entries: inner, .. } = &entries[1].1 else {
            panic!("b is not a map")
        };
        assert_eq!(inner[0].0.pos, Pos { line: 3, col: 3 });
    }

    #[test]
    fn quoted_scalars_are_marked() {
        let doc = parse("a: \"5\"\nb: 5\n").unwrap().unwrap();
        let Node::Map { entries, .. } = doc else {
            panic!()
        };
        assert!(matches!(entries[0].1, Node::Scalar { quoted: true, .. }));
        assert!(matches!(entries[1].1, Node::Scalar { quoted: false, .. }));
    }

    #[test]
    fn empty_file_has_no_document() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }

    #[test]
    fn refuses_aliases() {
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(err.message.contains("not supported"), "{err:?}");
    }
}
