//! Reading a NIfTI file: opening it (plain or gzip, told apart by its
//! content), checking the sizes its header declares against the file
//! before anything is allocated, reading the data bytes, and reordering
//! voxels between the file's order (first axis fastest) and the row-major
//! arrays the crate uses (both directions: the writer needs the reverse).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use ndarray::{Array, ArrayD, IxDyn};

use super::header::{parse, NiftiHeader, V1, V2};
use super::{bad, not_nifti};
use crate::error::{Error, FileProblem, Result};
use crate::io::{file_error, os_error};

/// Largest expansion of a `.nii.gz` file accepted: deflate cannot expand
/// more than 1032:1, plus room for the gzip framing of tiny files.
const MAX_GZIP_RATIO: u64 = 1100;

/// An open NIfTI file positioned after its header.
pub(super) struct Opened {
    reader: Box<dyn Read>,
    gz: bool,
    file_len: u64,
    pub(super) header: NiftiHeader,
}

/// The error for a failed read: a corrupt or truncated gzip stream, or the OS's.
fn read_error(path: &Path, gz: bool, e: &std::io::Error) -> Error {
    use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    if gz && matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof) {
        file_error(path, FileProblem::BadData { reason: format!("the gzip stream is corrupt ({e})") })
    } else {
        os_error(path, e)
    }
}

/// `read` until `buf` is full or the stream ends; the number of bytes
/// read, and whether the stream was cut short (a truncated gzip stream).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((n, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((n, false))
}

/// Open `path`, read and check its header, and check the declared data
/// size against the file's size.
pub(super) fn open(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).map_err(|e| os_error(path, &e))?;
    let file_len = file.metadata().map_err(|e| os_error(path, &e))?.len();
    let mut magic = [0u8; 2];
    let (got, _) = fill(&mut file, &mut magic).map_err(|e| os_error(path, &e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| os_error(path, &e))?;
    let gz = got == 2 && magic == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut first = [0u8; 4];
    let (got, cut) = fill(&mut reader, &mut first).map_err(|e| read_error(path, gz, &e))?;
    if cut {
        return Err(file_error(
            path,
            FileProblem::BadData {
                reason: format!("the gzip stream ends after {got} bytes (a truncated file)"),
            },
        ));
    }
    if got < 4 {
        let what = if gz { "its gzip stream" } else { "the file" };
        return Err(not_nifti(path, format!("{what} holds {got} bytes")));
    }
    let (version, big, size) = match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => (1, false, V1.size),
        (540, _) => (2, false, V2.size),
        (_, 348) => (1, true, V1.size),
        (_, 540) => (2, true, V2.size),
        (n, _) => {
            return Err(not_nifti(path, format!("sizeof_hdr is {n}, not 348 (NIfTI-1) or 540 (NIfTI-2)")))
        }
    };
    let mut raw = vec![0u8; size];
    raw[..4].copy_from_slice(&first);
    let (got, _) = fill(&mut reader, &mut raw[4..]).map_err(|e| read_error(path, gz, &e))?;
    if got + 4 < size {
        return Err(file_error(
            path,
            FileProblem::NiftiTruncated {
                part: "header",
                expected_bytes: size as u64,
                found_bytes: (got + 4) as u64,
            },
        ));
    }
    let header = parse(path, raw, big, version)?;
    let data = header.data_bytes as u64;
    if gz {
        let end = header.vox_offset.saturating_add(data);
        let max = file_len.saturating_mul(MAX_GZIP_RATIO);
        if end > max {
            return Err(bad(
                path,
                format!(
                    "it declares {end} bytes (vox_offset {} + {data} bytes of data), more than a \
                     {file_len}-byte gzip file can hold",
                    header.vox_offset
                ),
            ));
        }
    } else {
        if header.vox_offset > file_len {
            return Err(bad(
                path,
                format!("vox_offset = {} is past the end of the file ({file_len} bytes)", header.vox_offset),
            ));
        }
        let found = file_len - header.vox_offset;
        if found < data {
            return Err(file_error(
                path,
                FileProblem::NiftiTruncated { part: "data", expected_bytes: data, found_bytes: found },
            ));
        }
    }
    Ok(Opened { reader, gz, file_len, header })
}

/// The raw data bytes (file order) and the header; `check` may refuse
/// the header before the data is read.
pub(super) fn read_data(
    path: &Path,
    check: impl FnOnce(&NiftiHeader) -> Result<()>,
) -> Result<(Vec<u8>, NiftiHeader)> {
    let Opened { mut reader, gz, file_len, header } = open(path)?;
    check(&header)?;
    let size = header.layout().size as u64;
    let expected_bytes = header.data_bytes as u64;
    let truncated = |found_bytes| {
        file_error(path, FileProblem::NiftiTruncated { part: "data", expected_bytes, found_bytes })
    };
    let skip = header.vox_offset - size;
    let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
        .map_err(|e| read_error(path, gz, &e))?;
    if skipped < skip {
        return Err(truncated(0));
    }
    // Bounded by the file's size in `open` (or 1100 times it for gzip, of
    // which memory grows only with what the stream really holds).
    let cap = if gz {
        usize::try_from(file_len.saturating_mul(64)).map_or(header.data_bytes, |c| c.min(header.data_bytes))
    } else {
        header.data_bytes
    };
    let mut data = Vec::new();
    data.try_reserve_exact(cap)
        .map_err(|_| Error::OutOfMemory { bytes: cap as u64, what: "a NIfTI volume" })?;
    match (&mut reader).take(expected_bytes).read_to_end(&mut data) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(read_error(path, gz, &e)),
    }
    if data.len() < header.data_bytes {
        return Err(truncated(data.len() as u64));
    }
    if gz {
        // to the end of the stream, which checks its CRC and length
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| read_error(path, gz, &e))?;
    }
    Ok((data, header))
}

/// The multi-index `(x, y, z, ...)` of flat position `p` in file order
/// (first axis fastest).
pub(super) fn unravel_file_order(mut p: usize, shape: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .map(|&n| {
            let i = p % n.max(1);
            p /= n.max(1);
            i
        })
        .collect()
}

/// `src` holds an array of `shape` in file order (first axis fastest); the
/// same array in row-major order, each element mapped by `map`. A tiled
/// transposition: the first and the last axis in blocks, so that reads and
/// writes both stay within a few cache lines.
pub(super) fn to_row_major<S: Copy, T: Copy>(src: &[S], shape: &[usize], map: impl Fn(S) -> T) -> Vec<T> {
    const B: usize = 32;
    let n = src.len();
    let nd = shape.len();
    let Some(&first) = src.first() else { return Vec::new() };
    if nd < 2 || shape.iter().filter(|&&s| s > 1).count() <= 1 || shape.iter().product::<usize>() != n {
        return src.iter().map(|&v| map(v)).collect();
    }
    // strides: file order (first axis fastest) and row-major
    let mut fs = vec![1usize; nd];
    let mut cs = vec![1usize; nd];
    for k in 1..nd {
        fs[k] = fs[k - 1] * shape[k - 1];
        cs[nd - 1 - k] = cs[nd - k] * shape[nd - k];
    }
    let (nx, nl) = (shape[0], shape[nd - 1]);
    let (sx, sl) = (cs[0], fs[nd - 1]);
    let mid = &shape[1..nd - 1];
    let mut idx = vec![0usize; mid.len()];
    let mut out = vec![map(first); n];
    loop {
        let (mut bs, mut bd) = (0, 0);
        for (j, &i) in idx.iter().enumerate() {
            bs += i * fs[j + 1];
            bd += i * cs[j + 1];
        }
        for x0 in (0..nx).step_by(B) {
            for l0 in (0..nl).step_by(B) {
                for x in x0..(x0 + B).min(nx) {
                    let d = bd + x * sx;
                    for l in l0..(l0 + B).min(nl) {
                        out[d + l] = map(src[bs + x + l * sl]);
                    }
                }
            }
        }
        let mut j = 0;
        loop {
            if j == idx.len() {
                return out;
            }
            idx[j] += 1;
            if idx[j] < mid[j] {
                break;
            }
            idx[j] = 0;
            j += 1;
        }
    }
}

/// The inverse of [`to_row_major`]: a row-major array of `shape` in file order.
pub(super) fn to_file_order<S: Copy, T: Copy>(src: &[S], shape: &[usize], map: impl Fn(S) -> T) -> Vec<T> {
    let reversed: Vec<usize> = shape.iter().rev().copied().collect();
    to_row_major(src, &reversed, map)
}

pub(super) fn shaped<T>(path: &Path, shape: &[usize], values: Vec<T>) -> Result<ArrayD<T>> {
    Array::from_shape_vec(IxDyn(shape), values).map_err(|_| {
        file_error(path, FileProblem::BadData { reason: "data length does not match the shape".into() })
    })
}
