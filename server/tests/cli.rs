//! The `kiln` binary: `show` on both real models, `list` over a models directory and an
//! Ollama-layout store, one-line errors (never a panic) for hostile files.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$KILN_MODELS/<file>`; a missing model fails unless KILN_SKIP_MODEL_TESTS=1.
fn model(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kiln/models"));
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("KILN_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {} not found and KILN_SKIP_MODEL_TESTS=1", path.display());
        return None;
    }
    panic!("model {} not found (set KILN_MODELS, or KILN_SKIP_MODEL_TESTS=1)", path.display());
}

/// Runs `kiln` with a hermetic environment: models from `models`, Ollama store `ollama`.
fn kiln(args: &[&str], models: &Path, ollama: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_MODELS", models)
        .env("OLLAMA_MODELS", ollama)
        .env("HOME", models)
        .output()
        .expect("run kiln")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value after `label` on its line of `kiln show` output.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

fn show(model_path: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let o = kiln(&["show", model_path.to_str().unwrap()], tmp.path(), tmp.path());
    assert!(o.status.success(), "kiln show failed: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn show_gemma3() {
    let Some(path) = model(GEMMA) else { return };
    let out = show(&path);
    assert_eq!(field(&out, "architecture"), "gemma3");
    assert_eq!(field(&out, "block count"), "18");
    assert_eq!(field(&out, "embedding length"), "640");
    assert_eq!(field(&out, "context length"), "32768");
    assert_eq!(field(&out, "parameters"), "268.10M");
    assert_eq!(field(&out, "quantization"), "Q4_K_M");
    assert_eq!(field(&out, "tensor types"), "F32 109, Q5_0 81, Q4_K 27, Q8_0 10, Q6_K 9");
    assert_eq!(field(&out, "tokenizer"), "llama");
}

#[test]
fn show_smollm2_by_name_from_models_dir() {
    let Some(path) = model(SMOLLM) else { return };
    let dir = path.parent().unwrap();
    let empty = tempfile::tempdir().unwrap();
    // Names are case-insensitive, the tag defaults to latest.
    let o = kiln(&["show", "smollm2-135m-instruct.q4_1"], dir, empty.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "architecture"), "llama");
    assert_eq!(field(&out, "block count"), "30");
    assert_eq!(field(&out, "embedding length"), "576");
    assert_eq!(field(&out, "tensor types"), "Q4_1 210, F32 61, Q8_0 1");
    assert_eq!(field(&out, "chat template"), "present");
    assert_eq!(field(&out, "tokenizer"), "gpt2");
}

#[test]
fn show_verbose_dumps_metadata_and_tensors() {
    let Some(path) = model(SMOLLM) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let o = kiln(&["--models", path.parent().unwrap().to_str().unwrap(), "show", "--verbose", "SmolLM2-135M-Instruct.Q4_1:latest"], tmp.path(), tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let tokens = out.lines().find(|l| l.trim_start().starts_with("tokenizer.ggml.tokens")).expect("tokens line");
    assert!(tokens.contains("array<string>") && tokens.contains("(49152 total)"), "{tokens}");
    assert!(tokens.len() < 400, "long arrays must be abbreviated");
    let emb = out.lines().find(|l| l.trim_start().starts_with("token_embd.weight")).expect("tensor line");
    assert!(emb.contains("Q8_0") && emb.contains("576 x 49152"), "{emb}");
    let n_tensor_lines = out.lines().skip_while(|l| !l.contains("Tensors (")).skip(2).count();
    assert_eq!(n_tensor_lines, 272);
}

#[test]
fn list_models_dir_and_ollama_store() {
    let Some(smollm) = model(SMOLLM) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let ollama = tmp.path().join("ollama");
    fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(&smollm, models.join("tiny.gguf")).unwrap();

    // An Ollama store as `ollama pull` leaves it: blob + manifest.
    let blobs = ollama.join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let hex = "ab".repeat(32);
    fs::hard_link(&smollm, blobs.join(format!("sha256-{hex}")))
        .or_else(|_| std::os::unix::fs::symlink(&smollm, blobs.join(format!("sha256-{hex}"))))
        .unwrap();
    let size = fs::metadata(&smollm).unwrap().len();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{hex}","size":{size}}}]}}"#
    );
    for (host, ns, name, tag) in [("registry.ollama.ai", "library", "smollm2", "135m"), ("hf.co", "bartowski", "SmolLM2-GGUF", "Q4_1")] {
        let dir = ollama.join("manifests").join(host).join(ns).join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(tag), &manifest).unwrap();
    }
    let manifest_digest = {
        use sha2::Digest;
        sha2::Sha256::digest(manifest.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };

    let o = kiln(&["list"], &models, &ollama);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "ID", "SIZE", "QUANT", "MODIFIED"]);
    let row = |name: &str| -> Vec<String> {
        let l = lines.iter().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        l.split_whitespace().map(String::from).collect()
    };
    let tiny = row("tiny:latest");
    assert_eq!(tiny[1].len(), 12);
    assert!(tiny[1].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!((tiny[2].as_str(), tiny[3].as_str(), tiny[4].as_str()), ("98", "MB", "Q4_1"));
    let pulled = row("smollm2:135m");
    assert_eq!(pulled[1], manifest_digest[..12]);
    assert_eq!(pulled[4], "Q4_1");
    assert!(out.contains("ago"));
    row("hf.co/bartowski/SmolLM2-GGUF:Q4_1");

    // And the pulled model resolves under Ollama's names.
    let o = kiln(&["show", "registry.ollama.ai/library/smollm2:135m"], &models, &ollama);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(field(&stdout(&o), "architecture"), "llama");
}

fn assert_one_line_error(o: &Output) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {}", stdout(o));
    assert_ne!(o.status.code(), Some(101), "exit code 101 means a panic: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got:\n{err}");
    err
}

#[test]
fn hostile_files_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.gguf", vec![]),
        ("magic.gguf", b"GGML\x03\0\0\0".to_vec()),
        ("nkv.gguf", [b"GGUF".as_slice(), &3u32.to_le_bytes(), &0u64.to_le_bytes(), &u64::MAX.to_le_bytes()].concat()),
        ("ndims.gguf", [b"GGUF".as_slice(), &3u32.to_le_bytes(), &1u64.to_le_bytes(), &0u64.to_le_bytes(), &1u64.to_le_bytes(), b"t", &9u32.to_le_bytes(), &[0u8; 64]].concat()),
    ];
    if let Some(smollm) = model(SMOLLM) {
        // The real header cut in the middle of the vocabulary.
        let bytes = fs::read(&smollm).unwrap();
        cases.push(("truncated.gguf", bytes[..500_000].to_vec()));
    }
    for (name, bytes) in &cases {
        let path = tmp.path().join(name);
        fs::write(&path, bytes).unwrap();
        let o = kiln(&["show", path.to_str().unwrap()], tmp.path(), tmp.path());
        let err = assert_one_line_error(&o);
        assert!(err.contains(name), "error should name the file: {err}");
    }
    // `list` skips the hostile files rather than failing.
    let o = kiln(&["list"], tmp.path(), tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unknown_and_invalid_names_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = assert_one_line_error(&kiln(&["show", "no-such-model"], tmp.path(), tmp.path()));
    assert!(err.contains("not found"), "{err}");
    let err = assert_one_line_error(&kiln(&["show", "../../etc/passwd"], tmp.path(), tmp.path()));
    assert!(err.contains("invalid model name"), "{err}");
}

#[test]
fn pull_is_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let err = assert_one_line_error(&kiln(&["pull", "x"], tmp.path(), tmp.path()));
    assert!(err.contains("not implemented"), "{err}");
}
