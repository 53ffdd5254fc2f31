//! The log on disk: `DIR/segments/<first seq, 20 digits>.jsonl`, one record
//! per line; checkpoints are records too. An enclave starts a new segment
//! each time it starts, and when one grows past its size limit.
//!
//! Reading is shared by the writer (recovering at start) and the verifier.
//! It never trusts what it reads: a line that does not parse is reported
//! with its position, and bytes after the last newline of the last segment
//! are a torn tail (a write the crash interrupted; never acknowledged).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::AuditError;
use crate::merkle::{leaf_hash, Hash};
use crate::record::{Record, MAX_RECORD_BYTES};

/// The segments folder inside a log directory.
pub const SEGMENTS: &str = "segments";
/// The latest checkpoint, in a witness directory.
pub const CHECKPOINT: &str = "checkpoint";
/// A segment file's extension.
const SEGMENT_EXT: &str = "jsonl";

/// The file name of the segment whose first record is `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.{SEGMENT_EXT}")
}

/// One record as stored.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The line's bytes, without its newline: the Merkle leaf.
    pub raw: Vec<u8>,
    /// The leaf hash.
    pub leaf: Hash,
    /// The parsed record, or why it does not parse.
    pub record: Result<Record, String>,
    /// The segment it is in.
    pub segment: String,
    /// The segment file.
    pub path: PathBuf,
    /// Where its line starts in that file.
    pub offset: u64,
}

/// Bytes after the last complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the complete lines end.
    pub offset: u64,
    /// The bytes after it.
    pub bytes: Vec<u8>,
}

/// What a log directory holds, unjudged.
#[derive(Debug, Clone, Default)]
pub struct LogContents {
    /// Every complete line, in file order.
    pub records: Vec<StoredRecord>,
    /// Segment files in order: (first seq from the name, name, index into
    /// `records` of its first line).
    pub segments: Vec<(u64, String, usize)>,
    /// Segment files whose names are not segment names.
    pub strays: Vec<String>,
    /// Incomplete last line, if any.
    pub torn: Option<TornTail>,
    /// A complete line in a non-last segment that lacks its newline.
    pub unterminated: Vec<String>,
}

/// Reads a log directory. A directory without segments is an empty log.
pub fn read_dir(dir: &Path) -> Result<LogContents, AuditError> {
    let mut contents = LogContents::default();
    let segments_dir = dir.join(SEGMENTS);
    let mut names = Vec::new();
    match std::fs::read_dir(&segments_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| AuditError::io(&segments_dir, &e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                match name
                    .strip_suffix(&format!(".{SEGMENT_EXT}"))
                    .filter(|n| n.len() == 20)
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(first) => names.push((first, name)),
                    None => contents.strays.push(name),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AuditError::io(&segments_dir, &e)),
    }
    names.sort();
    let last = names.len().saturating_sub(1);
    for (i, (first, name)) in names.into_iter().enumerate() {
        let path = segments_dir.join(&name);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| AuditError::io(&path, &e))?;
        contents
            .segments
            .push((first, name.clone(), contents.records.len()));
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let (lines, rest) = bytes.split_at(complete);
        // Every complete line ends in a newline; an empty line is damage
        // and is kept, as a record that does not parse.
        let mut offset = 0u64;
        if let Some(lines) = lines.strip_suffix(b"\n") {
            for line in lines.split(|&b| b == b'\n') {
                contents.records.push(stored(line, &name, &path, offset));
                offset += line.len() as u64 + 1;
            }
        }
        if !rest.is_empty() {
            if i == last {
                contents.torn = Some(TornTail {
                    path: path.clone(),
                    offset: complete as u64,
                    bytes: rest.to_vec(),
                });
            } else {
                contents.unterminated.push(name.clone());
                contents.records.push(stored(rest, &name, &path, offset));
            }
        }
    }
    Ok(contents)
}

fn stored(line: &[u8], segment: &str, path: &Path, offset: u64) -> StoredRecord {
    let record = if line.len() > MAX_RECORD_BYTES {
        Err(format!(
            "a line of {} bytes is longer than any record",
            line.len()
        ))
    } else {
        serde_json::from_slice::<Record>(line).map_err(|e| e.to_string())
    };
    StoredRecord {
        raw: line.to_vec(),
        leaf: leaf_hash(line),
        record,
        segment: segment.to_owned(),
        path: path.to_path_buf(),
        offset,
    }
}
