//! A string column chunk's dictionary: distinct values in first-seen
//! order, in an open-addressing table of their hashes.
//!
//! Input: values, a block at a time. Output: each value's index, the
//! PLAIN-encoded dictionary page body, its size. Never fails.

use super::hybrid::bits;

/// A [`Dict`] slot of entry `e` with hash `h`.
pub(super) fn slot(h: u64, e: usize) -> u64 {
    h >> 32 << 32 | (e as u64 + 1)
}

/// A chunk's dictionary: distinct values in first-seen order.
#[derive(Default)]
pub(super) struct Dict {
    /// Open addressing: the entry's hash's upper half << 32 | entry index
    /// + 1, 0 for an empty slot (a probe compares hashes within the slot;
    /// the table grows from the slots, which hold the bits it indexes by).
    slots: Vec<u64>,
    /// Per entry: where its bytes end in `bytes`.
    ends: Vec<u32>,
    bytes: Vec<u8>,
    /// Per entry, the last page that used it (`page`); the entries the
    /// current page used.
    marks: Vec<u32>,
    page: u32,
    used: Vec<u32>,
}

impl Dict {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes of the dictionary page (PLAIN: length and bytes of each value).
    pub(super) fn page_size(&self) -> usize {
        self.bytes.len() + 4 * self.len()
    }

    pub(super) fn memory_size(&self) -> usize {
        self.slots.capacity() * 8 + self.ends.capacity() * 4 + self.bytes.capacity() + self.marks.capacity() * 4 + self.used.capacity() * 4
    }

    pub(super) fn entry(&self, e: usize) -> &[u8] {
        let start = if e == 0 { 0 } else { self.ends[e - 1] as usize };
        &self.bytes[start..self.ends[e] as usize]
    }

    /// The index of `v`, added when new.
    #[inline(always)]
    pub(super) fn intern(&mut self, v: &[u8]) -> u32 {
        self.reserve(1);
        self.intern_reserved(v)
    }

    /// Room for `n` new entries with the table at most half full.
    #[inline(always)]
    pub(super) fn reserve(&mut self, n: usize) {
        while (self.ends.len() + n) * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// [`Dict::intern`] after [`Dict::reserve`] made room for this value.
    #[inline(always)]
    pub(super) fn intern_reserved(&mut self, v: &[u8]) -> u32 {
        let h = crate::hash::bytes(v);
        let mask = self.slots.len() - 1;
        let mut i = (h >> 40) as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let e = (s as u32) as usize - 1;
            if s >> 32 == h >> 32 && crate::decode::convert::bytes_eq(self.entry(e), v) {
                if self.marks[e] != self.page {
                    self.marks[e] = self.page;
                    self.used.push(e as u32);
                }
                return e as u32;
            }
            i = (i + 1) & mask;
        }
        let e = self.ends.len();
        self.slots[i] = slot(h, e);
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len() as u32);
        self.marks.push(self.page);
        self.used.push(e as u32);
        e as u32
    }

    #[inline(never)]
    pub(super) fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(256);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = size - 1;
        for s in old.into_iter().filter(|&s| s != 0) {
            let mut i = (s >> 40) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// Width of the indices of a page (all below `len`), as parquet-rs.
    pub(super) fn bit_width(&self) -> u8 {
        bits(self.len().saturating_sub(1) as u64)
    }

    /// The dictionary page's content: each value's length and bytes.
    pub(super) fn plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 4 * self.len());
        for e in 0..self.len() {
            let v = self.entry(e);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// Min and max of the entries the current page used.
    pub(super) fn page_min_max(&self) -> Option<(&[u8], &[u8])> {
        let mut entries = self.used.iter().map(|&e| self.entry(e as usize));
        let first = entries.next()?;
        Some(entries.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }

    pub(super) fn next_page(&mut self) {
        self.page += 1;
        self.used.clear();
    }
}
