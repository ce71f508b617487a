//! Target `npy`: arbitrary bytes into the `.npy` reader of `gconv run`.
//!
//! Whatever the bytes, the reader returns an array or an error; an array it returns holds
//! exactly the elements its shape declares, all of which came from the file.

/// Parses `data` as a `.npy` file and checks what comes back; panics only on a defect.
pub fn npy(data: &[u8]) {
    let Ok(array) = gconv_cli::npy::parse(data) else {
        return;
    };
    let declared = array
        .shape
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim));
    assert_eq!(declared, Some(array.data.len()), "shape {:?}", array.shape);
    assert!(
        array.data.len() * 4 <= data.len(),
        "{} elements from {} bytes",
        array.data.len(),
        data.len()
    );
}
