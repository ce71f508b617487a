//! NumPy `.npy` files of float32 in C order, read with every claim of the header checked
//! against the file before anything is allocated, and written atomically.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use npyz::{DType, Order, WriterBuilder};

/// A float32 array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub data: Vec<f32>,
}

/// Reads a float32, C-order `.npy` file (either byte order).
pub fn read(path: &Path) -> Result<Array> {
    let describe = || format!("cannot read {}", path.display());
    // Before opening: opening a FIFO would wait for a writer, maybe forever.
    let metadata = std::fs::metadata(path).with_context(describe)?;
    if metadata.is_dir() {
        bail!(
            "cannot read {}: it is a directory, not a .npy file",
            path.display()
        );
    }
    if !metadata.is_file() {
        bail!(
            "cannot read {}: it is not a regular file (a FIFO, socket or device)",
            path.display()
        );
    }
    let mut file = File::open(path).with_context(describe)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(describe)?;
    parse(&bytes).with_context(|| format!("{} is not a float32 C-order .npy file", path.display()))
}

/// Parses the bytes of a `.npy` file holding float32 in C order.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    check_declared_size(bytes)?;
    let npy = npyz::NpyFile::new(bytes).context("malformed .npy header")?;
    match npy.dtype() {
        DType::Plain(type_str)
            if type_str.size_field() == 4 && type_str.type_char() == npyz::TypeChar::Float => {}
        other => bail!(
            "its dtype is {}, but only float32 ('<f4') is accepted",
            other.descr()
        ),
    }
    ensure!(
        npy.order() == Order::C,
        "it is in Fortran order; save it in C order (numpy.ascontiguousarray)"
    );
    let shape = npy
        .shape()
        .iter()
        .map(|&dim| usize::try_from(dim))
        .collect::<Result<Vec<usize>, _>>()
        .context("a dimension of its shape does not fit in usize")?;
    let elements = shape
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim))
        .with_context(|| format!("its shape {shape:?} has more elements than fit in usize"))?;
    debug_assert!(
        elements <= bytes.len() / 4,
        "check_declared_size bounds the count"
    );
    let data = npy
        .into_vec::<f32>()
        .with_context(|| format!("its data are truncated or unreadable (shape {shape:?})"))?;
    ensure!(
        data.len() == elements,
        "it holds {} elements, its shape {shape:?} declares {elements}",
        data.len()
    );
    Ok(Array { shape, data })
}

/// Bracket nesting a header may have: enough for any dtype NumPy writes, little enough for
/// the parser (see `check_declared_size`).
const MAX_HEADER_NESTING: usize = 6;

/// Checks, before `npyz` sees the header, that the element count its shape declares fits in
/// the file at four bytes each. `npyz` multiplies the dimensions unchecked (a panic in a debug
/// build, a wrapped count in a release build), so a hostile header must not reach it.
fn check_declared_size(bytes: &[u8]) -> Result<()> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(b"\x93NUMPY"),
        "it does not start with the .npy magic bytes"
    );
    let (length_end, text_len): (usize, usize) = match bytes[6] {
        1 => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        2 | 3 => {
            let field = bytes.get(8..12).context("its header is truncated")?;
            (12, u32::from_le_bytes(field.try_into()?) as usize)
        }
        major => bail!("unsupported .npy format version {major}"),
    };
    let text_end = length_end
        .checked_add(text_len)
        .filter(|&end| end <= bytes.len())
        .context("its header is longer than the file")?;
    let text =
        std::str::from_utf8(&bytes[length_end..text_end]).context("its header is not text")?;
    // py_literal's parser takes time exponential in the nesting of brackets (60 `[` took
    // minutes, found by fuzzing); a real header nests three deep at most (a structured
    // dtype's list of tuples inside the dictionary).
    let depth = text
        .bytes()
        .scan(0usize, |depth, byte| {
            match byte {
                b'(' | b'[' | b'{' => *depth += 1,
                b')' | b']' | b'}' => *depth = depth.saturating_sub(1),
                _ => {}
            }
            Some(*depth)
        })
        .max()
        .unwrap_or(0);
    ensure!(
        depth <= MAX_HEADER_NESTING,
        "malformed .npy header: brackets nested {depth} deep (a .npy header needs at most {MAX_HEADER_NESTING})"
    );
    let header: py_literal::Value = text.trim().parse().context("malformed .npy header")?;
    let py_literal::Value::Dict(entries) = header else {
        bail!("malformed .npy header: not a dictionary");
    };
    // A key given twice would let this check read one 'shape' and npyz another (found by
    // fuzzing): refuse it, as no writer of .npy files produces one.
    let keys: Vec<&String> = entries
        .iter()
        .filter_map(|(key, _)| key.as_string())
        .collect();
    if let Some(key) = keys
        .iter()
        .enumerate()
        .find_map(|(index, key)| keys[..index].contains(key).then_some(key))
    {
        bail!("malformed .npy header: the key '{key}' appears twice");
    }
    let shape = entries
        .iter()
        .find(|(key, _)| key.as_string().is_some_and(|key| key == "shape"))
        .map(|(_, value)| value)
        .context("malformed .npy header: no 'shape'")?;
    let (py_literal::Value::Tuple(dims) | py_literal::Value::List(dims)) = shape else {
        bail!("malformed .npy header: 'shape' is not a tuple");
    };
    let mut elements: u64 = 1;
    for dim in dims {
        let py_literal::Value::Integer(dim) = dim else {
            bail!("malformed .npy header: a dimension of 'shape' is not an integer");
        };
        let dim =
            u64::try_from(dim).context("a dimension of its shape is negative or too large")?;
        elements = elements.saturating_mul(dim);
    }
    let data_bytes = (bytes.len() - text_end) as u64;
    ensure!(
        elements.saturating_mul(4) <= data_bytes,
        "its header declares {elements} elements ({} bytes of float32) but only {data_bytes} bytes of data follow",
        elements.saturating_mul(4)
    );
    Ok(())
}

/// Writes `data` of `shape` as a little-endian float32 `.npy` file at `path`, through a
/// temporary file in the same directory renamed over `path` at the end: on any error `path`
/// is left exactly as it was.
pub fn write_atomically(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&dim| dim as u64).collect();
    crate::files::write_atomically(path, |out| {
        let mut writer = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(out)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built version 1.0 header for `descr`, `fortran` and `shape`, padded to 64 bytes.
    fn header(descr: &str, fortran: bool, shape: &str) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        raw_header(&format!(
            "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}"
        ))
    }

    /// A version 1.0 header holding the dictionary `dict`, padded to 64 bytes.
    fn raw_header(dict: &str) -> Vec<u8> {
        let mut dict = dict.to_string();
        while !(10 + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes
    }

    fn with_data(mut bytes: Vec<u8>, values: &[f32]) -> Vec<u8> {
        for value in values {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn reads_what_it_writes() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("x.npy");
        write_atomically(&path, &[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let array = read(&path).unwrap();
        assert_eq!(array.shape, [2, 1, 3]);
        assert_eq!(array.data, [1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
    }

    #[test]
    fn parses_a_hand_built_file() {
        let bytes = with_data(header("<f4", false, "(2,)"), &[1.5, -2.0]);
        assert_eq!(
            parse(&bytes).unwrap(),
            Array {
                shape: vec![2],
                data: vec![1.5, -2.0]
            }
        );
    }

    #[test]
    fn refuses_other_dtypes_fortran_order_and_short_data() {
        let float64 = with_data(header("<f8", false, "(1,)"), &[0.0, 0.0]);
        let error = format!("{:#}", parse(&float64).unwrap_err());
        assert!(error.contains("float32"), "{error}");

        let fortran = with_data(header("<f4", true, "(2, 2)"), &[0.0; 4]);
        let error = format!("{:#}", parse(&fortran).unwrap_err());
        assert!(error.contains("Fortran"), "{error}");

        let truncated = with_data(header("<f4", false, "(3,)"), &[0.0; 2]);
        assert!(parse(&truncated).is_err());
    }

    #[test]
    fn a_header_claiming_terabytes_is_refused_before_allocating() {
        let huge = with_data(header("<f4", false, "(1000000, 1000000, 1000)"), &[0.0; 4]);
        let error = format!("{:#}", parse(&huge).unwrap_err());
        assert!(
            error.contains("but only 16 bytes of data follow"),
            "{error}"
        );
        let overflowing = header("<f4", false, "(18446744073709551615, 4)");
        assert!(parse(&overflowing).is_err());
    }

    #[test]
    fn deeply_nested_headers_are_refused_quickly() {
        let nested = format!("({}1{},)", "[".repeat(60), "]".repeat(60));
        let bytes = with_data(header("<f4", false, &nested), &[0.0]);
        let start = std::time::Instant::now();
        let error = format!("{:#}", parse(&bytes).unwrap_err());
        assert!(error.contains("nested 62 deep"), "{error}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // A structured dtype nests three deep and is still parsed (then refused as not f4).
        let structured = with_data(
            raw_header("{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (1,), }"),
            &[0.0; 2],
        );
        let error = format!("{:#}", parse(&structured).unwrap_err());
        assert!(error.contains("only float32"), "{error}");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        // The first 'shape' declares nothing, the second more than the file holds.
        let bytes = with_data(
            raw_header("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), 'shape': (9,), }"),
            &[1.0; 4],
        );
        let error = format!("{:#}", parse(&bytes).unwrap_err());
        assert!(error.contains("the key 'shape' appears twice"), "{error}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\x93NUMPY\x01\x00\xff\xff{").is_err());
        assert!(parse(&[0u8; 100]).is_err());
    }
}
