//! String column chunks, written here instead of by parquet-rs.
//!
//! Input: the parts of a row group (consecutive slices of record batches),
//! for each string leaf that [`string_leaves`] takes: a string column or
//! struct field (at any struct depth), or the string elements of a list or
//! the string keys or values of a map (one level of repetition, the strings
//! directly inside it, structs around it).
//! Output: per row group, one column chunk per leaf — a snappy PLAIN
//! dictionary page, then snappy data pages v1 (RLE repetition and
//! definition levels, RLE_DICTIONARY indices) — as bytes and the
//! [`ColumnCloseResult`] that splices them into the row group
//! (`SerializedRowGroupWriter::append_column`). Leaves judged mostly
//! distinct (`plain`: ids, URLs) get PLAIN data pages and no dictionary; a
//! dictionary past [`DICT_LIMIT`] bytes falls back to PLAIN pages for the
//! rest of the chunk, as parquet-rs does. Pages hold at most 20k rows and
//! about 1 MiB. Chunk statistics are those parquet-rs writes (null count =
//! levels without a value; min and max truncated as [`StringStats`] does),
//! and so is the page index: per page its min and max (of the dictionary
//! entries it used, or of its PLAIN values), nulls, place and first row.
//! Failure: a [`ParquetError`] from building the page headers or the
//! metadata, which would be a bug.
//!
//! The levels come from one pass over the arrays, the dictionary is an
//! open-addressing table of word hashes ([`super::dict`]), and page
//! buffers are reused ([`super::pages`]); the files are those parquet-rs's
//! own writer would describe the same way (the tests in `parquet_file`
//! compare statistics and read the rows back).

use super::dict::Dict;
use super::hybrid::{bits, rle_into};
use super::pages::{snappy, Pages};
use super::stats::{MinMax, StringStats};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Schema};
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

/// Dictionary bytes (PLAIN-encoded) past which a chunk's later pages go
/// PLAIN: parquet-rs's default `dictionary_page_size_limit`.
pub const DICT_LIMIT: usize = 1 << 20;
/// Rows per data page at most (parquet-rs's `data_page_row_count_limit`).
const PAGE_ROWS: usize = 20_000;
/// Encoded bytes per data page, about (parquet-rs's `data_page_size_limit`).
const PAGE_BYTES: usize = 1 << 20;
/// Rows taken in between page checks (parquet-rs's `write_batch_size`).
const BLOCK: usize = 1024;

/// Where a leaf sits under its top-level column.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafPath {
    /// The top-level column.
    pub column: usize,
    /// Struct levels from the column down: child index, and whether that
    /// node (the column itself first) is nullable.
    structs: Vec<(usize, bool)>,
    /// The node below the structs: the string leaf itself, or a list or map
    /// holding it.
    end: End,
    /// Whether the chunk starts with a dictionary (else PLAIN pages only).
    dictionary: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The strings; nullable?
    Leaf(bool),
    /// A list (nullable?) of strings (nullable?).
    List(bool, bool),
    /// A map's (nullable?) keys.
    MapKeys(bool),
    /// A map's (nullable?) values (nullable?).
    MapValues(bool, bool),
}

/// The string leaves written here: their leaf index in `parquet` and their
/// path in `arrow`, for every leaf of a shape this module writes whose
/// dotted name is not in `plain` (columns that go without a dictionary).
pub fn string_leaves(parquet: &SchemaDescriptor, arrow: &Schema, plain: &[Vec<String>]) -> Vec<(usize, LeafPath)> {
    let mut out = Vec::new();
    let mut leaf = 0;
    for (c, f) in arrow.fields().iter().enumerate() {
        visit(f, c, &mut Vec::new(), &mut vec![f.name().clone()], plain, &mut leaf, &mut out);
    }
    if leaf != parquet.num_columns() {
        return Vec::new(); // a layout this walk does not know: parquet-rs writes everything
    }
    // the levels this module writes must be the schema's (and fit the
    // bytes it keeps them in)
    out.retain(|(l, p)| {
        let d = parquet.column(*l);
        d.physical_type() == parquet::basic::Type::BYTE_ARRAY && (d.max_def_level(), d.max_rep_level()) == p.max_levels() && d.max_def_level() <= u8::MAX as i16
    });
    out
}

/// Walks `f` (at struct path `structs` under column `c`) in leaf order,
/// counting leaves in `leaf` and collecting the ones written here.
fn visit(
    f: &Field,
    c: usize,
    structs: &mut Vec<(usize, bool)>,
    names: &mut Vec<String>,
    plain: &[Vec<String>],
    leaf: &mut usize,
    out: &mut Vec<(usize, LeafPath)>,
) {
    let take = |end: End, dictionary: bool, structs: &Vec<(usize, bool)>, out: &mut Vec<(usize, LeafPath)>, leaf: usize| {
        out.push((leaf, LeafPath { column: c, structs: structs.clone(), end, dictionary }));
    };
    match f.data_type() {
        DataType::Struct(fields) => {
            for (i, child) in fields.iter().enumerate() {
                structs.push((i, f.is_nullable()));
                names.push(child.name().clone());
                visit(child, c, structs, names, plain, leaf, out);
                names.pop();
                structs.pop();
            }
        }
        DataType::Utf8 => {
            take(End::Leaf(f.is_nullable()), !plain.contains(names), structs, out, *leaf);
            *leaf += 1;
        }
        DataType::List(e) if e.data_type() == &DataType::Utf8 => {
            take(End::List(f.is_nullable(), e.is_nullable()), true, structs, out, *leaf);
            *leaf += 1;
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                for (i, child) in kv.iter().enumerate() {
                    if child.data_type() == &DataType::Utf8 {
                        let end = if i == 0 { End::MapKeys(f.is_nullable()) } else { End::MapValues(f.is_nullable(), child.is_nullable()) };
                        take(end, true, structs, out, *leaf);
                        *leaf += 1;
                    } else {
                        *leaf += leaf_count(child.data_type());
                    }
                }
            }
            dt => *leaf += leaf_count(dt),
        },
        dt => *leaf += leaf_count(dt),
    }
}

/// Parquet leaves under an Arrow type.
pub fn leaf_count(dt: &DataType) -> usize {
    match dt {
        DataType::Struct(fs) => fs.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _) => leaf_count(e.data_type()),
        DataType::Map(entries, _) => leaf_count(entries.data_type()),
        _ => 1,
    }
}

impl LeafPath {
    /// Nullable nodes from the column down to the list or map (inclusive),
    /// or to the leaf.
    fn optional_above(&self) -> i16 {
        let outer = self.structs.iter().filter(|(_, n)| *n).count() as i16;
        let end = match self.end {
            End::Leaf(n) | End::List(n, _) | End::MapKeys(n) | End::MapValues(n, _) => n,
        };
        outer + i16::from(end)
    }

    /// (max definition level, max repetition level).
    fn max_levels(&self) -> (i16, i16) {
        let above = self.optional_above();
        match self.end {
            End::Leaf(_) => (above, 0),
            End::List(_, e) | End::MapValues(_, e) => (above + 1 + i16::from(e), 1),
            End::MapKeys(_) => (above + 1, 1),
        }
    }
}

/// One leaf's chunk of the open row group.
pub struct StringColumn {
    path: LeafPath,
    descr: ColumnDescPtr,
    max_def: i16,
    max_rep: i16,
    dict: Dict,
    /// The current page: levels, and dictionary indices (or PLAIN bytes
    /// after the fallback).
    defs: Vec<u8>,
    reps: Vec<u8>,
    indices: Vec<u32>,
    plain: Vec<u8>,
    page_rows: usize,
    fallback: bool,
    /// Data pages written so far (header and body each).
    pages: Pages,
    sizes: Sizes,
    stats: StringStats,
    /// Min and max of the current page's PLAIN values.
    plain_min_max: MinMax,
    /// Values in the current page.
    page_values: u64,
    /// The page index: per data page its min and max (truncated), nulls
    /// and place.
    index: PageIndex,
    /// The uncompressed page, kept for the next one.
    page_buf: Vec<u8>,
    rows: u64,
}

/// Page counts and sizes of a chunk.
#[derive(Default)]
struct Sizes {
    levels: u64,
    /// `levels` when the current page began.
    levels_flushed: u64,
    compressed: u64,
    uncompressed: u64,
    dict_pages: i32,
    plain_pages: i32,
}

impl StringColumn {
    pub fn new(path: LeafPath, descr: ColumnDescPtr) -> StringColumn {
        let (max_def, max_rep) = path.max_levels();
        let fallback = !path.dictionary;
        StringColumn {
            path,
            descr,
            max_def,
            max_rep,
            dict: Dict::default(),
            defs: Vec::new(),
            reps: Vec::new(),
            indices: Vec::new(),
            plain: Vec::new(),
            page_rows: 0,
            fallback,
            pages: Pages::default(),
            sizes: Sizes::default(),
            stats: StringStats::default(),
            plain_min_max: MinMax::default(),
            page_values: 0,
            index: PageIndex::default(),
            page_buf: Vec::new(),
            rows: 0,
        }
    }

    pub fn path(&self) -> &LeafPath {
        &self.path
    }

    /// Bytes held: pages written, the dictionary, the current page and the
    /// buffer kept for the next one.
    pub fn memory_size(&self) -> usize {
        self.pages.len as usize
            + self.dict.memory_size()
            + self.defs.capacity()
            + self.reps.capacity()
            + self.indices.capacity() * 4
            + self.plain.capacity()
            + self.page_buf.capacity()
    }

    /// Appends the leaf's values of `column` (the top-level column of a
    /// part of the row group), in blocks of at most [`BLOCK`] rows; after
    /// each block the page is written when it is full, and the dictionary is
    /// given up when it is too large.
    pub fn write(&mut self, column: &ArrayRef) -> Result<(), ParquetError> {
        let rows = column.len();
        if self.rows == 0 {
            // room for the first part's levels at once (they are kept from page to page)
            let first = rows.min(PAGE_ROWS);
            self.defs.reserve(first * usize::from(self.max_def > 0));
            self.reps.reserve(first * usize::from(self.max_rep > 0));
        }
        let mut start = 0;
        while start < rows {
            let n = (PAGE_ROWS - self.page_rows).min(BLOCK).min(rows - start);
            self.write_rows(column, start, start + n);
            (start, self.page_rows, self.rows) = (start + n, self.page_rows + n, self.rows + n as u64);
            let bytes = self.indices.len() * 2 + self.plain.len().saturating_sub(PLAIN_GAP);
            let dict_full = !self.fallback && self.dict.page_size() > DICT_LIMIT;
            if self.page_rows >= PAGE_ROWS || bytes >= PAGE_BYTES || dict_full {
                self.flush_page()?;
                self.fallback |= dict_full;
            }
        }
        Ok(())
    }

    /// Levels and values of rows `from..to` of `column`.
    fn write_rows(&mut self, column: &ArrayRef, from: usize, to: usize) {
        // the nulls of the nullable structs above, and the array below them
        // (with the definition level of a null there)
        let mut nulls: Vec<(i16, &NullBuffer)> = Vec::new();
        let mut optional = 0;
        let mut array: &ArrayRef = column;
        for &(child, nullable) in &self.path.structs {
            if nullable {
                nulls.extend(array.nulls().filter(|n| n.null_count() > 0).map(|n| (optional, n)));
                optional += 1;
            }
            array = array.as_struct().column(child);
        }
        // definition level of row i above the end node, and whether it is valid there
        let outer = |i: usize| -> (i16, bool) {
            if nulls.is_empty() {
                return (optional, true);
            }
            for &(d, n) in &nulls {
                if n.is_null(i) {
                    return (d, false);
                }
            }
            (optional, true)
        };
        let levels = to - from;
        self.defs.reserve(levels);
        match self.path.end {
            End::Leaf(nullable) => {
                let strings = array.as_string::<i32>();
                let own = strings.nulls().filter(|n| nullable && n.null_count() > 0);
                let (offsets, data) = (strings.value_offsets(), strings.value_data());
                if nulls.is_empty() && own.is_none() {
                    // every row has a value: the common case
                    self.defs.resize(self.defs.len() + levels * usize::from(self.max_def > 0), self.max_def as u8);
                    self.values((from..to).map(|i| &data[offsets[i] as usize..offsets[i + 1] as usize]));
                    self.sizes.levels += levels as u64;
                    return;
                }
                for i in from..to {
                    let (mut d, mut valid) = outer(i);
                    if valid && nullable {
                        valid = !own.is_some_and(|n| n.is_null(i));
                        d += i16::from(valid);
                    }
                    self.level(d, 0);
                    if valid {
                        self.value(&data[offsets[i] as usize..offsets[i + 1] as usize]);
                    }
                }
            }
            End::List(nullable, elem_nullable) => {
                let list = array.as_list::<i32>();
                let strings = list.values().as_string::<i32>();
                self.repeated(from..to, &outer, nullable.then_some(list.nulls()).flatten().filter(|n| n.null_count() > 0), list.offsets(), strings, elem_nullable);
            }
            End::MapKeys(nullable) => {
                let map = array.as_map();
                self.repeated(from..to, &outer, nullable.then_some(map.nulls()).flatten().filter(|n| n.null_count() > 0), map.offsets(), map.keys().as_string::<i32>(), false);
            }
            End::MapValues(nullable, value_nullable) => {
                let map = array.as_map();
                let strings = map.values().as_string::<i32>();
                self.repeated(from..to, &outer, nullable.then_some(map.nulls()).flatten().filter(|n| n.null_count() > 0), map.offsets(), strings, value_nullable);
            }
        }
    }

    /// The rows of a list or map (`nulls`, `offsets`) of `strings`.
    fn repeated(
        &mut self,
        rows: std::ops::Range<usize>,
        outer: &impl Fn(usize) -> (i16, bool),
        nulls: Option<&NullBuffer>,
        offsets: &OffsetBuffer<i32>,
        strings: &StringArray,
        elem_nullable: bool,
    ) {
        let nullable = matches!(self.path.end, End::List(true, _) | End::MapKeys(true) | End::MapValues(true, _));
        let elem_nulls = strings.nulls().filter(|n| elem_nullable && n.null_count() > 0);
        let (value_offsets, data) = (strings.value_offsets(), strings.value_data());
        self.reps.reserve(rows.len());
        for i in rows {
            let (mut d, mut valid) = outer(i);
            if valid && nullable {
                valid = !nulls.is_some_and(|n| n.is_null(i));
                d += i16::from(valid);
            }
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            if !valid || start == end {
                self.level(d, 0);
                continue;
            }
            for j in start..end {
                let present = !elem_nulls.is_some_and(|n| n.is_null(j));
                self.level(d + 1 + i16::from(elem_nullable && present), i16::from(j != start));
                if present {
                    self.value(&data[value_offsets[j] as usize..value_offsets[j + 1] as usize]);
                }
            }
        }
    }

    #[inline(always)]
    fn level(&mut self, def: i16, rep: i16) {
        if self.max_def > 0 {
            self.defs.push(def as u8);
        }
        if self.max_rep > 0 {
            self.reps.push(rep as u8);
        }
        self.sizes.levels += 1;
    }

    #[inline(always)]
    fn value(&mut self, v: &[u8]) {
        if self.fallback {
            self.plain_value(v);
        } else {
            let idx = self.dict.intern(v);
            self.indices.push(idx);
        }
        self.page_values += 1;
    }

    /// Several values: one fallback check.
    #[inline(always)]
    fn values<'v>(&mut self, vs: impl ExactSizeIterator<Item = &'v [u8]>) {
        self.page_values += vs.len() as u64;
        if self.fallback {
            vs.for_each(|v| self.plain_value(v));
        } else {
            self.indices.reserve(vs.len());
            self.dict.reserve(vs.len());
            for v in vs {
                let idx = self.dict.intern_reserved(v);
                self.indices.push(idx);
            }
        }
    }

    /// A PLAIN value (its count is kept by the caller).
    #[inline(always)]
    fn plain_value(&mut self, v: &[u8]) {
        if self.plain.is_empty() {
            self.plain.resize(PLAIN_GAP, 0); // room for the page's levels
        }
        self.plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.plain.extend_from_slice(v);
        self.plain_min_max.add(v);
    }

    fn flush_page(&mut self) -> Result<(), ParquetError> {
        if self.page_rows == 0 {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.page_buf);
        buf.clear();
        let levels = |max: i16, levels: &[u8], buf: &mut Vec<u8>| {
            if max > 0 {
                let at = buf.len();
                buf.extend_from_slice(&[0; 4]);
                rle_into(buf, bits(max as u64), levels);
                let len = (buf.len() - at - 4) as u32;
                buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
        };
        levels(self.max_rep, &self.reps, &mut buf);
        levels(self.max_def, &self.defs, &mut buf);
        // levels in the page (a required flat column has no level vectors)
        let num_values = (self.sizes.levels - self.sizes.levels_flushed) as u32;
        let (encoding, body, uncompressed) = if self.fallback {
            self.sizes.plain_pages += 1;
            if self.plain.len() >= PLAIN_GAP && buf.len() <= PLAIN_GAP {
                // the levels go in the room before the values: no copy of the values
                let at = PLAIN_GAP - buf.len();
                self.plain[at..PLAIN_GAP].copy_from_slice(&buf);
                (Encoding::PLAIN, snappy(&self.plain[at..])?, self.plain.len() - at)
            } else {
                buf.extend_from_slice(self.plain.get(PLAIN_GAP..).unwrap_or_default());
                (Encoding::PLAIN, snappy(&buf)?, buf.len())
            }
        } else {
            let width = self.dict.bit_width();
            buf.push(width);
            rle_into(&mut buf, width, &self.indices);
            self.sizes.dict_pages += 1;
            (Encoding::RLE_DICTIONARY, snappy(&buf)?, buf.len())
        };
        let page = Page::DataPage {
            buf: body.clone(),
            num_values,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        // the page's min and max: of its PLAIN values, or of the dictionary
        // entries it used
        let min_max = match self.fallback {
            true => self.plain_min_max.get().map(|(lo, hi)| (lo.to_vec(), hi.to_vec())),
            false => self.dict.page_min_max().map(|(lo, hi)| (lo.to_vec(), hi.to_vec())),
        };
        if let Some((lo, hi)) = &min_max {
            self.stats.add_min_max(lo, hi);
        }
        self.plain_min_max = MinMax::default();
        self.dict.next_page();
        let nulls = num_values as u64 - self.page_values;
        self.stats.add_nulls(nulls);
        let offset = self.pages.len;
        let (spec, _) = self.pages.write(CompressedPage::new(page, uncompressed), body)?;
        self.index.page(offset, spec.compressed_size, self.page_rows, nulls, min_max);
        self.page_values = 0;
        self.page_buf = buf;
        self.sizes.levels_flushed = self.sizes.levels;
        self.sizes.compressed += spec.compressed_size as u64;
        self.sizes.uncompressed += spec.uncompressed_size as u64;
        self.defs.clear();
        self.reps.clear();
        self.indices.clear();
        self.plain.clear();
        self.page_rows = 0;
        Ok(())
    }

    /// The chunk's bytes (dictionary page first) and what splices them
    /// into the row group.
    pub fn close(mut self) -> Result<(Pages, ColumnCloseResult), ParquetError> {
        self.flush_page()?;
        let levels = self.sizes.levels;
        let mut dict_len = 0;
        if self.sizes.dict_pages > 0 {
            let plain = self.dict.plain();
            let body = snappy(&plain)?;
            let page = Page::DictionaryPage { buf: body.clone(), num_values: self.dict.len() as u32, encoding: Encoding::PLAIN, is_sorted: false };
            let (spec, parts) = self.pages.write(CompressedPage::new(page, plain.len()), body)?;
            self.pages.parts.rotate_right(parts); // the dictionary page comes first
            self.sizes.compressed += spec.compressed_size as u64;
            self.sizes.uncompressed += spec.uncompressed_size as u64;
            dict_len = spec.compressed_size as i64;
        }
        let mut encodings = vec![Encoding::RLE];
        let mut page_stats = Vec::new();
        if self.sizes.dict_pages > 0 {
            encodings.extend([Encoding::PLAIN, Encoding::RLE_DICTIONARY]);
            page_stats.push(PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: Encoding::PLAIN, count: 1 });
            page_stats.push(PageEncodingStats { page_type: PageType::DATA_PAGE, encoding: Encoding::RLE_DICTIONARY, count: self.sizes.dict_pages });
        }
        if self.sizes.plain_pages > 0 {
            encodings.push(Encoding::PLAIN);
            page_stats.push(PageEncodingStats { page_type: PageType::DATA_PAGE, encoding: Encoding::PLAIN, count: self.sizes.plain_pages });
        }
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(Compression::SNAPPY)
            .set_encodings(encodings)
            .set_page_encoding_stats(page_stats)
            .set_total_compressed_size(self.sizes.compressed as i64)
            .set_total_uncompressed_size(self.sizes.uncompressed as i64)
            .set_num_values(levels as i64)
            .set_data_page_offset(dict_len)
            .set_dictionary_page_offset((dict_len > 0).then_some(0))
            .set_statistics(self.stats.finish())
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: self.pages.len,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: Some(self.index.column_index()?),
            offset_index: Some(self.index.offset_index(dict_len)),
        };
        Ok((self.pages, close))
    }
}

/// Bytes kept free before a page's PLAIN values for its levels, which are
/// encoded when the page is cut (an RLE run of one level is 4 + 1–3 bytes;
/// longer levels are copied with the values instead).
const PLAIN_GAP: usize = 32;

/// A chunk's page index as its data pages are written: the column index
/// (min and max truncated as the chunk statistics are, null counts, null
/// pages, whether the pages' bounds ascend or descend) and the offset index
/// (place and first row of each page).
#[derive(Default)]
struct PageIndex {
    /// Per page: offset among the data pages, size with header, rows.
    places: Vec<(u64, usize, usize)>,
    /// Per page: nulls, and min and max (None: no value in the page).
    stats: Vec<(u64, Option<(Vec<u8>, Vec<u8>)>)>,
}

impl PageIndex {
    fn page(&mut self, offset: u64, size: usize, rows: usize, nulls: u64, min_max: Option<(Vec<u8>, Vec<u8>)>) {
        self.places.push((offset, size, rows));
        self.stats.push((nulls, min_max));
    }

    fn column_index(&self) -> Result<parquet::file::page_index::column_index::ColumnIndexMetaData, ParquetError> {
        use parquet::file::metadata::ColumnIndexBuilder;
        let mut b = ColumnIndexBuilder::new(parquet::basic::Type::BYTE_ARRAY);
        let bounds: Vec<&(Vec<u8>, Vec<u8>)> = self.stats.iter().filter_map(|(_, mm)| mm.as_ref()).collect();
        let ascending = bounds.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        let descending = bounds.windows(2).all(|w| w[0].0 >= w[1].0 && w[0].1 >= w[1].1);
        for (nulls, mm) in &self.stats {
            match mm {
                Some((lo, hi)) => b.append(false, super::stats::truncate_min(lo).0, super::stats::truncate_max(hi).0, *nulls as i64),
                None => b.append(true, Vec::new(), Vec::new(), *nulls as i64),
            }
        }
        b.set_boundary_order(match (ascending, descending) {
            (true, _) => parquet::basic::BoundaryOrder::ASCENDING,
            (false, true) => parquet::basic::BoundaryOrder::DESCENDING,
            (false, false) => parquet::basic::BoundaryOrder::UNORDERED,
        });
        b.build()
    }

    /// The offset index, the data pages placed after `dict_len` bytes of dictionary page.
    fn offset_index(&self, dict_len: i64) -> parquet::file::page_index::offset_index::OffsetIndexMetaData {
        let mut b = parquet::file::metadata::OffsetIndexBuilder::new();
        for &(offset, size, rows) in &self.places {
            b.append_offset_and_size(dict_len + offset as i64, size as i32);
            b.append_row_count(rows as i64);
        }
        b.build()
    }
}
