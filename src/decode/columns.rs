//! Growable Arrow column buffers that can roll back a partly appended row.
//!
//! Input: values appended by the converter, one row at a time per column.
//! Output: Arrow arrays (`finish`) matching [`ColType::arrow`]. A record
//! that fails halfway is undone with [`ColBuf::truncate`], so a bad record
//! never leaves a trace in the batch its good neighbours land in.

use crate::schema::types::{struct_fields, ColType};
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};
use std::sync::Arc;

pub struct Prim<T> {
    pub vals: Vec<T>,
    pub valid: Validity,
}

/// Row validity that costs nothing until the first null: most columns of
/// most batches have none, so no bitmap is built for them at all.
#[derive(Default)]
pub struct Validity {
    len: usize,
    bits: Option<BooleanBufferBuilder>,
}

impl Validity {
    #[inline(always)]
    pub fn append(&mut self, valid: bool) {
        match &mut self.bits {
            None if valid => {}
            Some(b) => b.append(valid),
            None => self.first_null(),
        }
        self.len += 1;
    }
    #[cold]
    fn first_null(&mut self) {
        let mut b = BooleanBufferBuilder::new((self.len + 1).next_power_of_two().max(64));
        b.append_n(self.len, true);
        b.append(false);
        self.bits = Some(b);
    }
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether row `i` holds a value (is not null).
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.bits.as_ref().is_none_or(|b| b.get_bit(i))
    }
    pub fn truncate(&mut self, len: usize) {
        if let Some(b) = &mut self.bits {
            b.truncate(len);
        }
        self.len = self.len.min(len);
    }
    fn heap_bytes(&self) -> usize {
        self.bits.as_ref().map_or(0, |b| b.capacity() / 8 + 16)
    }
    fn finish(self) -> Option<NullBuffer> {
        let n = NullBuffer::new(self.bits?.finish());
        (n.null_count() > 0).then_some(n)
    }
}

impl<T: Default + Copy> Prim<T> {
    fn new() -> Self {
        Prim { vals: Vec::new(), valid: Validity::default() }
    }
    #[inline]
    pub fn push(&mut self, v: T) {
        self.vals.push(v);
        self.valid.append(true);
    }
    fn null(&mut self) {
        self.vals.push(T::default());
        self.valid.append(false);
    }
    fn truncate(&mut self, len: usize) {
        self.vals.truncate(len);
        self.valid.truncate(len);
    }
    #[inline]
    fn push_from(&mut self, src: &Prim<T>, i: usize) {
        self.vals.push(src.vals[i]);
        self.valid.append(src.valid.get(i));
    }
}

pub enum ColBuf {
    Bool(Prim<bool>),
    I8(Prim<i8>),
    I16(Prim<i16>),
    I32(Prim<i32>),
    I64(Prim<i64>),
    F32(Prim<f32>),
    F64(Prim<f64>),
    Dec(Prim<i128>),
    Date(Prim<i32>),
    Ts(Prim<i64>),
    Bytes { offsets: Vec<i32>, data: Vec<u8>, valid: Validity },
    List { offsets: Vec<i32>, valid: Validity, child: Box<ColBuf> },
    Struct { valid: Validity, children: Vec<ColBuf> },
    Map { offsets: Vec<i32>, valid: Validity, keys: Box<ColBuf>, vals: Box<ColBuf> },
}

impl ColBuf {
    pub fn new(ty: &ColType) -> ColBuf {
        match ty {
            ColType::Boolean => ColBuf::Bool(Prim::new()),
            ColType::TinyInt => ColBuf::I8(Prim::new()),
            ColType::SmallInt => ColBuf::I16(Prim::new()),
            ColType::Int => ColBuf::I32(Prim::new()),
            ColType::BigInt => ColBuf::I64(Prim::new()),
            ColType::Float => ColBuf::F32(Prim::new()),
            ColType::Double => ColBuf::F64(Prim::new()),
            ColType::Decimal { .. } => ColBuf::Dec(Prim::new()),
            ColType::Date => ColBuf::Date(Prim::new()),
            ColType::Timestamp => ColBuf::Ts(Prim::new()),
            ColType::String | ColType::Varchar(_) | ColType::Binary => {
                ColBuf::Bytes { offsets: vec![0], data: Vec::new(), valid: Validity::default() }
            }
            ColType::Array(e) => {
                ColBuf::List { offsets: vec![0], valid: Validity::default(), child: Box::new(ColBuf::new(e)) }
            }
            ColType::Map(k, v) => ColBuf::Map {
                offsets: vec![0],
                valid: Validity::default(),
                keys: Box::new(ColBuf::new(k)),
                vals: Box::new(ColBuf::new(v)),
            },
            ColType::Struct(fs) => ColBuf::Struct {
                valid: Validity::default(),
                children: fs.iter().map(|f| ColBuf::new(&f.ty)).collect(),
            },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ColBuf::Bool(p) => p.vals.len(),
            ColBuf::I8(p) => p.vals.len(),
            ColBuf::I16(p) => p.vals.len(),
            ColBuf::I32(p) | ColBuf::Date(p) => p.vals.len(),
            ColBuf::I64(p) | ColBuf::Ts(p) => p.vals.len(),
            ColBuf::F32(p) => p.vals.len(),
            ColBuf::F64(p) => p.vals.len(),
            ColBuf::Dec(p) => p.vals.len(),
            ColBuf::Bytes { offsets, .. } | ColBuf::List { offsets, .. } | ColBuf::Map { offsets, .. } => offsets.len() - 1,
            ColBuf::Struct { valid, .. } => valid.len(),
        }
    }


    /// Whether row `i` holds a value (is not null).
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        match self {
            ColBuf::Bool(p) => p.valid.get(i),
            ColBuf::I8(p) => p.valid.get(i),
            ColBuf::I16(p) => p.valid.get(i),
            ColBuf::I32(p) | ColBuf::Date(p) => p.valid.get(i),
            ColBuf::I64(p) | ColBuf::Ts(p) => p.valid.get(i),
            ColBuf::F32(p) => p.valid.get(i),
            ColBuf::F64(p) => p.valid.get(i),
            ColBuf::Dec(p) => p.valid.get(i),
            ColBuf::Bytes { valid, .. } | ColBuf::List { valid, .. } | ColBuf::Map { valid, .. } | ColBuf::Struct { valid, .. } => valid.get(i),
        }
    }

    pub fn push_null(&mut self) {
        match self {
            ColBuf::Bool(p) => p.null(),
            ColBuf::I8(p) => p.null(),
            ColBuf::I16(p) => p.null(),
            ColBuf::I32(p) | ColBuf::Date(p) => p.null(),
            ColBuf::I64(p) | ColBuf::Ts(p) => p.null(),
            ColBuf::F32(p) => p.null(),
            ColBuf::F64(p) => p.null(),
            ColBuf::Dec(p) => p.null(),
            ColBuf::Bytes { offsets, valid, .. } | ColBuf::List { offsets, valid, .. } | ColBuf::Map { offsets, valid, .. } => {
                offsets.push(*offsets.last().unwrap());
                valid.append(false);
            }
            ColBuf::Struct { valid, children } => {
                valid.append(false);
                children.iter_mut().for_each(ColBuf::push_null);
            }
        }
    }

    /// Appends a copy of row `i` of `src`, a buffer of the same type.
    pub fn push_from(&mut self, src: &ColBuf, i: usize) {
        let range = |o: &[i32]| o[i] as usize..o[i + 1] as usize;
        match (self, src) {
            (ColBuf::Bool(d), ColBuf::Bool(s)) => d.push_from(s, i),
            (ColBuf::I8(d), ColBuf::I8(s)) => d.push_from(s, i),
            (ColBuf::I16(d), ColBuf::I16(s)) => d.push_from(s, i),
            (ColBuf::I32(d), ColBuf::I32(s)) | (ColBuf::Date(d), ColBuf::Date(s)) => d.push_from(s, i),
            (ColBuf::I64(d), ColBuf::I64(s)) | (ColBuf::Ts(d), ColBuf::Ts(s)) => d.push_from(s, i),
            (ColBuf::F32(d), ColBuf::F32(s)) => d.push_from(s, i),
            (ColBuf::F64(d), ColBuf::F64(s)) => d.push_from(s, i),
            (ColBuf::Dec(d), ColBuf::Dec(s)) => d.push_from(s, i),
            (ColBuf::Bytes { offsets, data, valid }, ColBuf::Bytes { offsets: so, data: sd, valid: sv }) => {
                data.extend_from_slice(&sd[range(so)]);
                offsets.push(data.len() as i32);
                valid.append(sv.get(i));
            }
            (ColBuf::List { offsets, valid, child }, ColBuf::List { offsets: so, valid: sv, child: sc }) => {
                range(so).for_each(|j| child.push_from(sc, j));
                offsets.push(child.len() as i32);
                valid.append(sv.get(i));
            }
            (ColBuf::Map { offsets, valid, keys, vals }, ColBuf::Map { offsets: so, valid: sv, keys: sk, vals: svals }) => {
                for j in range(so) {
                    keys.push_from(sk, j);
                    vals.push_from(svals, j);
                }
                offsets.push(keys.len() as i32);
                valid.append(sv.get(i));
            }
            (ColBuf::Struct { valid, children }, ColBuf::Struct { valid: sv, children: sc }) => {
                children.iter_mut().zip(sc).for_each(|(c, s)| c.push_from(s, i));
                valid.append(sv.get(i));
            }
            _ => unreachable!("rows move between buffers of one type"),
        }
    }

    /// Drops every row at index `len` and beyond (including nested values).
    pub fn truncate(&mut self, len: usize) {
        match self {
            ColBuf::Bool(p) => p.truncate(len),
            ColBuf::I8(p) => p.truncate(len),
            ColBuf::I16(p) => p.truncate(len),
            ColBuf::I32(p) | ColBuf::Date(p) => p.truncate(len),
            ColBuf::I64(p) | ColBuf::Ts(p) => p.truncate(len),
            ColBuf::F32(p) => p.truncate(len),
            ColBuf::F64(p) => p.truncate(len),
            ColBuf::Dec(p) => p.truncate(len),
            ColBuf::Bytes { offsets, data, valid } => {
                offsets.truncate(len + 1);
                data.truncate(*offsets.last().unwrap() as usize);
                valid.truncate(len);
            }
            ColBuf::List { offsets, valid, child } => {
                offsets.truncate(len + 1);
                child.truncate(*offsets.last().unwrap() as usize);
                valid.truncate(len);
            }
            ColBuf::Map { offsets, valid, keys, vals } => {
                offsets.truncate(len + 1);
                let n = *offsets.last().unwrap() as usize;
                keys.truncate(n);
                vals.truncate(n);
                valid.truncate(len);
            }
            ColBuf::Struct { valid, children } => {
                valid.truncate(len);
                children.iter_mut().for_each(|c| c.truncate(len));
            }
        }
    }

    /// Bytes this buffer occupies: its own struct plus every heap block
    /// (with the allocator's per-block overhead), for the memory budget.
    pub fn mem_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }

    fn heap_bytes(&self) -> usize {
        const BLOCK: usize = 16;
        fn v<T>(v: &Vec<T>) -> usize {
            if v.capacity() == 0 { 0 } else { v.capacity() * std::mem::size_of::<T>() + BLOCK }
        }
        fn p<T>(x: &Prim<T>) -> usize {
            v(&x.vals) + x.valid.heap_bytes()
        }
        match self {
            ColBuf::Bool(x) => p(x),
            ColBuf::I8(x) => p(x),
            ColBuf::I16(x) => p(x),
            ColBuf::I32(x) | ColBuf::Date(x) => p(x),
            ColBuf::I64(x) | ColBuf::Ts(x) => p(x),
            ColBuf::F32(x) => p(x),
            ColBuf::F64(x) => p(x),
            ColBuf::Dec(x) => p(x),
            ColBuf::Bytes { offsets, data, valid } => v(offsets) + v(data) + valid.heap_bytes(),
            ColBuf::List { offsets, valid, child } => v(offsets) + valid.heap_bytes() + BLOCK + child.mem_bytes(),
            ColBuf::Map { offsets, valid, keys, vals } => v(offsets) + valid.heap_bytes() + 2 * BLOCK + keys.mem_bytes() + vals.mem_bytes(),
            ColBuf::Struct { valid, children } => valid.heap_bytes() + v(children) + children.iter().map(ColBuf::heap_bytes).sum::<usize>(),
        }
    }

    /// Builds the Arrow array and leaves this buffer empty.
    pub fn finish(&mut self, ty: &ColType) -> ArrayRef {
        let taken = std::mem::replace(self, ColBuf::new(ty));
        taken.into_array(ty)
    }

    /// As [`ColBuf::finish`], and leaves room for as many values again and
    /// an eighth more, so the next rows of the same kind grow no vector (a
    /// buffer encoded chunk by chunk reuses the memory it just freed).
    pub fn finish_reserving(&mut self, ty: &ColType) -> ArrayRef {
        let mut fresh = ColBuf::new(ty);
        fresh.reserve_like(self);
        std::mem::replace(self, fresh).into_array(ty)
    }

    /// Reserves in this empty buffer room for `full`'s values, and an eighth more.
    fn reserve_like(&mut self, full: &ColBuf) {
        fn r<T, U>(v: &mut Vec<T>, like: &Vec<U>) {
            v.reserve(like.len() + like.len() / 8);
        }
        match (self, full) {
            (ColBuf::Bool(a), ColBuf::Bool(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::I8(a), ColBuf::I8(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::I16(a), ColBuf::I16(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::I32(a), ColBuf::I32(b)) | (ColBuf::Date(a), ColBuf::Date(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::I64(a), ColBuf::I64(b)) | (ColBuf::Ts(a), ColBuf::Ts(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::F32(a), ColBuf::F32(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::F64(a), ColBuf::F64(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::Dec(a), ColBuf::Dec(b)) => r(&mut a.vals, &b.vals),
            (ColBuf::Bytes { offsets, data, .. }, ColBuf::Bytes { offsets: o, data: d, .. }) => {
                r(offsets, o);
                r(data, d);
            }
            (ColBuf::List { offsets, child, .. }, ColBuf::List { offsets: o, child: c, .. }) => {
                r(offsets, o);
                child.reserve_like(c);
            }
            (ColBuf::Map { offsets, keys, vals, .. }, ColBuf::Map { offsets: o, keys: k, vals: v, .. }) => {
                r(offsets, o);
                keys.reserve_like(k);
                vals.reserve_like(v);
            }
            (ColBuf::Struct { children, .. }, ColBuf::Struct { children: c, .. }) => {
                children.iter_mut().zip(c).for_each(|(a, b)| a.reserve_like(b));
            }
            _ => unreachable!("buffers of one column type"),
        }
    }

    fn into_array(self, ty: &ColType) -> ArrayRef {
        fn prim<T: ArrowPrimitiveType>(p: Prim<T::Native>) -> PrimitiveArray<T> {
            PrimitiveArray::<T>::new(ScalarBuffer::from(p.vals), p.valid.finish())
        }
        match (self, ty) {
            (ColBuf::Bool(p), _) => {
                let mut b = BooleanBufferBuilder::new(p.vals.len());
                p.vals.iter().for_each(|&v| b.append(v));
                Arc::new(BooleanArray::new(b.finish(), p.valid.finish()))
            }
            (ColBuf::I8(p), _) => Arc::new(prim::<Int8Type>(p)),
            (ColBuf::I16(p), _) => Arc::new(prim::<Int16Type>(p)),
            (ColBuf::I32(p), _) => Arc::new(prim::<Int32Type>(p)),
            (ColBuf::I64(p), _) => Arc::new(prim::<Int64Type>(p)),
            (ColBuf::F32(p), _) => Arc::new(prim::<Float32Type>(p)),
            (ColBuf::F64(p), _) => Arc::new(prim::<Float64Type>(p)),
            (ColBuf::Date(p), _) => Arc::new(prim::<Date32Type>(p)),
            (ColBuf::Dec(p), ColType::Decimal { precision, scale }) => Arc::new(
                prim::<Decimal128Type>(p).with_precision_and_scale(*precision, *scale as i8).expect("valid decimal"),
            ),
            (ColBuf::Ts(p), _) => Arc::new(prim::<TimestampMillisecondType>(p).with_timezone(crate::schema::types::UTC)),
            (ColBuf::Bytes { offsets, data, valid }, ColType::Binary) => {
                // SAFETY: offsets start at 0 and never decrease (only appended
                // from data.len() or truncated together with data).
                let off = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
                Arc::new(BinaryArray::new(off, Buffer::from_vec(data), valid.finish()))
            }
            (ColBuf::Bytes { offsets, data, valid }, _) => {
                // SAFETY: offsets as above; every appended value came from a
                // `&str` or validated UTF-8 input, so data is valid UTF-8 at
                // every offset.
                unsafe {
                    let off = OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets));
                    Arc::new(StringArray::new_unchecked(off, Buffer::from_vec(data), valid.finish()))
                }
            }
            (ColBuf::List { offsets, valid, child }, ColType::Array(e)) => {
                let values = child.into_array(e);
                let field = Arc::new(Field::new("element", e.arrow(), true));
                Arc::new(ListArray::new(field, OffsetBuffer::new(ScalarBuffer::from(offsets)), values, valid.finish()))
            }
            (ColBuf::Map { offsets, valid, keys, vals }, ColType::Map(k, v)) => {
                let DataType::Map(entries_field, _) = ty.arrow() else { unreachable!() };
                let DataType::Struct(entry_fields) = entries_field.data_type().clone() else { unreachable!() };
                let entries = StructArray::new(entry_fields, vec![keys.into_array(k), vals.into_array(v)], None);
                Arc::new(MapArray::new(entries_field, OffsetBuffer::new(ScalarBuffer::from(offsets)), entries, valid.finish(), false))
            }
            (ColBuf::Struct { valid, children }, ColType::Struct(fs)) => {
                let arrays: Vec<ArrayRef> = children.into_iter().zip(fs).map(|(c, f)| c.into_array(&f.ty)).collect();
                let len = valid.len();
                let n = valid.finish();
                if fs.is_empty() {
                    Arc::new(StructArray::new_empty_fields(len, n))
                } else {
                    Arc::new(StructArray::new(struct_fields(fs), arrays, n))
                }
            }
            _ => unreachable!("column buffer built for another type"),
        }
    }
}
