//! 64-byte aligned, zero-initialised buffers of plain numbers, for packed weights and SIMD loads.

use std::fmt;

/// Element types that are plain bits: any byte pattern is a valid value, no padding, no drop glue.
///
/// # Safety
/// Implement only for types where every bit pattern of `size_of::<T>()` bytes is a valid value and
/// whose alignment divides 64.
pub unsafe trait Pod: Copy + Default + Send + Sync + 'static {}
// SAFETY: primitive numbers: every bit pattern is valid, alignment ≤ 8.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);
const _: () = assert!(std::mem::size_of::<Line>() == 64);

/// A vector of `len` values of `T` whose first element sits on a 64-byte boundary.
#[derive(Clone)]
pub struct AlignedVec<T: Pod> {
    lines: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Pod> AlignedVec<T> {
    /// `len` zeroed values.
    pub fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        Self { lines: vec![Line([0; 64]); bytes.div_ceil(64)], len, _t: std::marker::PhantomData }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut v = Self::zeroed(values.len());
        v.as_mut_slice().copy_from_slice(values);
        v
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `lines` holds at least `len * size_of::<T>()` initialised bytes, aligned to 64;
        // `T: Pod` makes every bit pattern a valid `T`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }

    /// The values, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }

    /// Bytes held, including the padding to whole 64-byte lines.
    pub fn capacity_bytes(&self) -> usize {
        self.lines.len() * 64
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for AlignedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedVec<{}>[{}]", std::any::type_name::<T>(), self.len)
    }
}

impl<T: Pod> std::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> std::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let v = AlignedVec::<f32>::zeroed(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert!(v.iter().all(|&x| x == 0.0));
        }
        let v = AlignedVec::from_slice(&[1i8, -2, 3]);
        assert_eq!(&*v, &[1, -2, 3]);
    }
}
