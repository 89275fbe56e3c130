//! A YAML document as a tree of nodes that remember where they are in the file.
//!
//! serde-saphyr parses the text (YAML 1.2 booleans, duplicate keys passed through so that we can
//! report them with both places) and its `Spanned` wrapper gives every node its line, column and
//! byte range. Keeping the whole tree, rather than deserializing straight into the typed structs,
//! is what lets the loader report every problem of a file at once: serde stops at the first one.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

/// Where a node is: 1-based line and column (in characters) and the byte range in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path the way users write it: `boxes.web.publish[1].host`.
pub(crate) fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Node {
    /// What a user would call this kind of value, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar used as a mapping key (`1:` is the key "1"). `None` for lists and
    /// mappings used as keys, which no Forkr file has.
    pub fn key_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Null => Some(String::new()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::UInt(u) => Some(u.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Str(s) => Some(s.clone()),
            Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// The entry under `key` of a mapping: (key node, value node). The first one wins when a key
    /// repeats (the repeat is reported on its own).
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => {
                entries.iter().find(|(k, _)| k.key_text().as_deref() == Some(key)).map(|(k, v)| (k, v))
            }
            _ => None,
        }
    }

    /// Follows `path`; returns the key node holding the last step (for mappings) and the value.
    pub fn find(&self, path: &[Seg]) -> Option<(Option<&Node>, &Node)> {
        let mut key = None;
        let mut cur = self;
        for seg in path {
            match (seg, &cur.kind) {
                (Seg::Key(k), Kind::Map(_)) => {
                    let (kn, vn) = cur.entry(k)?;
                    key = Some(kn);
                    cur = vn;
                }
                (Seg::Index(i), Kind::Seq(items)) => {
                    key = None;
                    cur = items.get(*i)?;
                }
                _ => return None,
            }
        }
        Some((key, cur))
    }

    /// The value as JSON, for deserializing into the typed structs once the structure is known to
    /// be right. Repeated keys keep the first value, as [`Node::entry`] does.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::UInt(u) => Value::from(*u),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let key = k.key_text().unwrap_or_default();
                    map.entry(key).or_insert_with(|| v.to_json());
                }
                Value::Object(map)
            }
        }
    }
}

/// A YAML syntax error: the parser's message and where it stopped.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub pos: Option<Pos>,
}

/// Parses every document of `text` (a file may hold several, separated by `---`). An empty file, or
/// one with only comments, has no documents.
pub(crate) fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_multiple_with_options::<Spanned<Raw>>(text, options) {
        Ok(docs) => Ok(docs.into_iter().map(|d| convert(d, text)).collect()),
        Err(err) => {
            let pos = err.location().and_then(|loc| {
                let (line, column) = (loc.line() as usize, loc.column() as usize);
                if line == 0 {
                    return None;
                }
                let offset = match loc.span().byte_offset() {
                    Some(o) => o as usize,
                    None => byte_offset_of(text, line, column),
                };
                Some(Pos { line, column, offset, len: 1 })
            });
            Err(SyntaxError { message: strip_location_suffix(&err.to_string()), pos })
        }
    }
}

/// serde-saphyr appends " at line L, column C" to parser messages; the diagnostic shows the place
/// itself, so the suffix would only repeat it.
fn strip_location_suffix(message: &str) -> String {
    let message = message.trim();
    match message.rfind(" at line ") {
        Some(idx) if message[idx..].contains("column") => message[..idx].to_owned(),
        _ => message.to_owned(),
    }
}

/// The byte offset of a 1-based line and character column.
fn byte_offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l.chars().take(column.saturating_sub(1)).map(char::len_utf8).sum();
            return (offset + col_bytes).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

/// The tree as serde-saphyr hands it over, before positions are made plain.
#[derive(Debug)]
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

fn convert(raw: Spanned<Raw>, text: &str) -> Node {
    let loc = raw.referenced;
    let span = loc.span();
    let (line, column) = (loc.line() as usize, loc.column() as usize);
    let offset = span.byte_offset().map_or_else(|| byte_offset_of(text, line, column), |o| o as usize);
    let len = span.byte_len().map_or(0, |l| l as usize);
    let pos = Pos { line, column, offset: offset.min(text.len()), len };
    let kind = match raw.value {
        Raw::Null => Kind::Null,
        Raw::Bool(b) => Kind::Bool(b),
        Raw::Int(i) => Kind::Int(i),
        Raw::UInt(u) => Kind::UInt(u),
        Raw::Float(f) => Kind::Float(f),
        Raw::Str(s) => Kind::Str(s),
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(|i| convert(i, text)).collect()),
        Raw::Map(entries) => {
            Kind::Map(entries.into_iter().map(|(k, v)| (convert(k, text), convert(v, text))).collect())
        }
    };
    Node { kind, pos }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::UInt(v))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
                i64::try_from(v).map(Raw::Int).map_err(|_| E::custom("integer is too large"))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
                u64::try_from(v).map(Raw::UInt).map_err(|_| E::custom("integer is too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = a.next_key()? {
                    let v = a.next_value()?;
                    entries.push((k, v));
                }
                Ok(Raw::Map(entries))
            }
        }

        d.deserialize_any(RawVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_bytes_and_lines() {
        let text = "# c\nproject: démo\nboxes:\n  web:\n    port: 8080\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 1);
        let (key, port) = docs[0]
            .find(&[Seg::Key("boxes".into()), Seg::Key("web".into()), Seg::Key("port".into())])
            .unwrap();
        assert_eq!(port.kind, Kind::UInt(8080));
        assert_eq!((port.pos.line, port.pos.column), (5, 11));
        assert_eq!(&text[port.pos.offset..port.pos.offset + port.pos.len], "8080");
        let key = key.unwrap();
        assert_eq!(&text[key.pos.offset..key.pos.offset + key.pos.len], "port");
    }

    #[test]
    fn yaml_1_2_booleans_and_duplicates() {
        let docs = parse("a: yes\nb: true\na: 2\n").unwrap();
        let Kind::Map(entries) = &docs[0].kind else { panic!("not a map") };
        assert_eq!(entries.len(), 3, "duplicates are passed through");
        assert_eq!(entries[0].1.kind, Kind::Str("yes".into()));
        assert_eq!(entries[1].1.kind, Kind::Bool(true));
    }

    #[test]
    fn empty_and_multi_document() {
        assert!(parse("# nothing\n").unwrap().is_empty());
        assert_eq!(parse("a: 1\n---\nb: 2\n").unwrap().len(), 2);
    }

    #[test]
    fn syntax_error_has_position() {
        let text = "a: 1\nb: [1, 2\nc: 3\n";
        let err = parse(text).unwrap_err();
        let pos = err.pos.unwrap();
        assert_eq!(pos.line, 3);
        assert!(!err.message.contains("at line"), "{}", err.message);
        assert!(pos.offset < text.len());
    }
}
