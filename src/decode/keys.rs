//! Top-level JSON keys → slots, for both decode paths.
//!
//! Input: the first segment of every column's source path (lowercased by
//! the schema when matching ignores case); equal segments share a slot.
//! Output: the slot a record's key names, or `None` for an unknown key.
//! Keys match case-insensitively when the schema says so. The slot of each
//! member position in the previous record is tried first: most producers
//! write their keys in the same order every time.

use super::convert::key_matches;
use crate::hash::FastMap;

pub struct KeyIndex {
    index: FastMap<Box<[u8]>, usize>,
    /// Source key of each slot.
    names: Vec<String>,
    /// Slot of each member position in the previous record.
    last_order: Vec<Option<usize>>,
    case_insensitive: bool,
    lower: Vec<u8>,
}

impl KeyIndex {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a str>, case_insensitive: bool) -> KeyIndex {
        let mut index = FastMap::default();
        let mut names = Vec::new();
        for s in sources {
            index.entry(s.as_bytes().into()).or_insert_with(|| {
                names.push(s.to_string());
                names.len() - 1
            });
        }
        KeyIndex { index, names, last_order: Vec::new(), case_insensitive, lower: Vec::new() }
    }

    /// Number of slots (distinct source keys).
    pub fn slot_count(&self) -> usize {
        self.names.len()
    }

    /// The slot of a source key given to [`KeyIndex::new`].
    pub fn slot_of_source(&self, source: &str) -> usize {
        self.index[source.as_bytes()]
    }

    /// The slot of the key at member position `j` in the previous record.
    #[inline(always)]
    pub fn predicted(&self, j: usize) -> Option<usize> {
        self.last_order.get(j).copied().flatten()
    }

    /// The slot the key at member position `j` names, if any.
    #[inline(always)]
    pub fn slot(&mut self, key: &str, j: usize) -> Option<usize> {
        if let Some(&Some(s)) = self.last_order.get(j) {
            if key_matches(key, &self.names[s], self.case_insensitive) {
                return Some(s);
            }
        }
        self.slot_slow(key, j)
    }

    #[inline(never)]
    fn slot_slow(&mut self, key: &str, j: usize) -> Option<usize> {
        let bytes = key.as_bytes();
        let lookup: &[u8] = if self.case_insensitive && bytes.iter().any(|c| c.is_ascii_uppercase() || *c >= 0x80) {
            self.lower.clear();
            if key.is_ascii() {
                self.lower.extend(bytes.iter().map(u8::to_ascii_lowercase));
            } else {
                self.lower.extend_from_slice(key.to_lowercase().as_bytes());
            }
            &self.lower
        } else {
            bytes
        };
        let found = self.index.get(lookup).copied();
        if self.last_order.len() <= j {
            self.last_order.resize(j + 1, None);
        }
        self.last_order[j] = found;
        found
    }
}
