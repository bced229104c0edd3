//! Mask element types: anything that holds 0/1 (bool, integers, floats).

/// An element type that can hold a binary mask value.
///
/// Values other than 0 and 1 are rejected with
/// [`Error::NonBinaryMask`](crate::Error::NonBinaryMask) wherever a mask is read.
pub trait MaskValue: Copy + PartialEq + Send + Sync + 'static {
    /// Whether the value is exactly 0 or 1.
    fn is_binary(self) -> bool;
    /// Whether the value is 1 (object). Meaningful only for binary values.
    fn is_object(self) -> bool;
    /// The value as `f64`, for error messages.
    fn to_f64(self) -> f64;
}

impl MaskValue for bool {
    #[inline]
    fn is_binary(self) -> bool {
        true
    }
    #[inline]
    fn is_object(self) -> bool {
        self
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

macro_rules! int_mask {
    ($($t:ty),*) => {$(
        impl MaskValue for $t {
            #[inline]
            fn is_binary(self) -> bool {
                self == 0 || self == 1
            }
            #[inline]
            fn is_object(self) -> bool {
                self == 1
            }
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
int_mask!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_mask {
    ($($t:ty),*) => {$(
        impl MaskValue for $t {
            #[inline]
            fn is_binary(self) -> bool {
                self == 0.0 || self == 1.0
            }
            #[inline]
            fn is_object(self) -> bool {
                self == 1.0
            }
            #[allow(clippy::cast_lossless)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
float_mask!(f32, f64);
