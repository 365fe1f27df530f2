//! Errors from loading dictionary files.

use std::path::PathBuf;

/// A dictionary file could not be loaded. Parse errors name the file and the
/// line, so an operator can fix an extra dictionary without guessing.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// A line was rejected.
    #[error("{file}:{line}: {kind}")]
    Parse {
        /// The file as it was named when opened (path, or embedded name).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong with the line.
        kind: ParseErrorKind,
    },
    /// The top-level file passed to `load_file` could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The path that was asked for.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
}

impl DictionaryError {
    /// `(file, line)` of a parse error.
    pub fn location(&self) -> Option<(&str, usize)> {
        match self {
            DictionaryError::Parse { file, line, .. } => Some((file.as_str(), *line)),
            DictionaryError::Read { .. } => None,
        }
    }

    /// What was wrong, for a parse error.
    pub fn kind(&self) -> Option<&ParseErrorKind> {
        match self {
            DictionaryError::Parse { kind, .. } => Some(kind),
            DictionaryError::Read { .. } => None,
        }
    }
}

/// What was wrong with one dictionary line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The first word is not a dictionary keyword.
    #[error("unknown keyword {0:?}")]
    UnknownKeyword(String),
    /// A keyword is missing one of its fields.
    #[error("{keyword} needs {expected}")]
    MissingField {
        /// The keyword on the line.
        keyword: &'static str,
        /// Which field is missing.
        expected: &'static str,
    },
    /// More fields than the keyword takes.
    #[error("unexpected field {0:?}")]
    ExtraField(String),
    /// The ATTRIBUTE type is not one the loader knows.
    #[error("unknown attribute type {0:?}")]
    UnknownType(String),
    /// An ATTRIBUTE flag is not one the loader knows.
    #[error("unknown attribute flag {0:?}")]
    UnknownFlag(String),
    /// A number did not parse or is out of range.
    #[error("bad {what} {text:?}")]
    BadNumber {
        /// Which number (attribute number, value, vendor number, ...).
        what: &'static str,
        /// The text found.
        text: String,
    },
    /// VALUE names an attribute that is not defined (yet).
    #[error("VALUE for unknown attribute {0:?}")]
    UnknownAttribute(String),
    /// VALUE for an attribute whose type has no numeric values.
    #[error("VALUE for attribute {attr:?} of type {typ}, which has no named values")]
    ValueForNonInteger {
        /// The attribute named.
        attr: String,
        /// Its type.
        typ: &'static str,
    },
    /// BEGIN-VENDOR names a vendor that has no VENDOR line.
    #[error("unknown vendor {0:?}")]
    UnknownVendor(String),
    /// BEGIN-VENDOR / END-VENDOR do not pair up.
    #[error("unbalanced vendor block: {0}")]
    UnbalancedVendor(String),
    /// The file named by $INCLUDE could not be read.
    #[error("$INCLUDE {path}: not found ({reason})")]
    IncludeNotFound {
        /// The path as resolved.
        path: String,
        /// Why it could not be read.
        reason: String,
    },
    /// $INCLUDE of a file that is already being read.
    #[error("$INCLUDE {0}: include loop (the file is already being read)")]
    IncludeLoop(String),
    /// The name is already defined differently.
    #[error("attribute {name:?} is already defined as {existing}")]
    ConflictingAttribute {
        /// The attribute name.
        name: String,
        /// The existing definition.
        existing: String,
    },
    /// The vendor name is already defined with another number.
    #[error("vendor {name:?} is already defined as {existing}")]
    ConflictingVendor {
        /// The vendor name.
        name: String,
        /// The existing number.
        existing: u32,
    },
    /// The value name is already defined with another number.
    #[error("VALUE {attr} {name} is already defined as {existing}")]
    ConflictingValue {
        /// The attribute.
        attr: String,
        /// The value name.
        name: String,
        /// The existing number.
        existing: u64,
    },
}
