//! Coverage-guided fuzzing of the GGUF reader (spec/reliability.md A4).
//!
//! Any input must parse to `Ok` or `Err`, never panic or allocate beyond the input's size. For
//! accepted inputs it also checks the reader's promises and a differential property: the writer
//! accepts whatever the reader accepted, and the reader accepts what the writer wrote.
#![no_main]

use kiln_engine::gguf::{GgufFile, GgufWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else { return };
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes, "tensor {} view has the wrong length", t.name);
        assert!(f.tensor(&t.name).is_some());
    }
    for (key, value) in f.metadata() {
        let _ = value.to_string();
        let _ = (f.get_u32(key), f.get_u64(key), f.get_i32(key), f.get_f32(key), f.get_bool(key));
        let _ = (f.get_str(key), f.get_str_array(key), f.get_f32_array(key), f.get_i32_array(key));
    }
    let _ = (f.parameter_count(), f.type_census_string(), f.quantization_level());

    let mut out = Vec::new();
    if let Err(e) = GgufWriter::from_file(&f).write(&mut out) {
        panic!("writer rejected a file the reader accepted: {e}");
    }
    let g = match GgufFile::from_bytes(out) {
        Ok(g) => g,
        Err(e) => panic!("reader rejected what the writer wrote: {e}"),
    };
    assert_eq!(f.metadata().len() + usize::from(f.get("general.alignment").is_none() && f.alignment() != 32), g.metadata().len());
    assert_eq!(f.tensors().len(), g.tensors().len());
    for (a, b) in f.tensors().iter().zip(g.tensors()) {
        assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
        assert!(f.tensor_data(a) == g.tensor_data(b));
    }
});
