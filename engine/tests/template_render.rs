//! Chat templates: SmolLM2's own template (from its GGUF) and the built-in
//! Gemma fallback against hand-written expected strings, their tokenization
//! against llama.cpp's reference ids, and broken templates as errors.

use std::path::PathBuf;
use std::time::Instant;

use kiln_engine::gguf::GgufFile;
use kiln_engine::template::{ChatMessage, ChatTemplate, TemplateError};
use kiln_engine::tokenizer::Tokenizer;

fn open(file: &str) -> Option<(GgufFile, Tokenizer)> {
    let dir = std::env::var_os("KILN_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kiln/models")
    });
    let path = dir.join(file);
    if !path.exists() && std::env::var("KILN_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: model {} not found and KILN_SKIP_MODEL_TESTS=1", path.display());
        return None;
    }
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let tok = Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("tokenizer: {e}"));
    Some((f, tok))
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

fn conversation() -> Vec<ChatMessage> {
    vec![msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "2+2?")]
}

#[test]
fn smollm2_renders_its_own_chatml_template() {
    let Some((f, tok)) = open("SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let t = ChatTemplate::from_gguf(&f, &tok).expect("template");
    assert!(!t.is_builtin());
    assert!(t.source().contains("SmolLM"));
    assert_eq!(
        t.render(&conversation(), true).expect("render"),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    // without a system message the template inserts its default one
    let rendered = t.render(&[msg("user", "Hi")], true).expect("render");
    assert_eq!(
        rendered,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(t.render(&[msg("user", "Hi")], false).expect("render").matches("<|im_start|>").count(), 2);
    // tokenized as the engine will: the tail equals llama.cpp's ids for that text
    let ids = tok.encode(&rendered, true, true).expect("encode");
    assert!(ids.ends_with(&[1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198]), "{ids:?}");
    assert!(!t.starts_with_bos(&rendered, &tok));
}

#[test]
fn gemma3_falls_back_to_the_builtin_turn_format() {
    let Some((f, tok)) = open("gemma-3-270m-q4_k_m.gguf") else { return };
    let t = ChatTemplate::from_gguf(&f, &tok).expect("template");
    assert!(t.is_builtin(), "gemma-3-270m carries no chat template");
    assert_eq!(
        t.render(&conversation(), true).expect("render"),
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
    );
    let rendered = t.render(&[msg("user", "Hi")], true).expect("render");
    assert_eq!(rendered, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    // BOS comes from the tokenizer; the rest matches llama.cpp's ids for this text
    assert!(!t.starts_with_bos(&rendered, &tok));
    let ids = tok.encode(&rendered, true, true).expect("encode");
    assert_eq!(ids, [2, 105, 2364, 107, 10979, 106, 107, 105, 4368, 107]);
    // tool results become user turns
    let with_tool = t.render(&[msg("user", "x"), msg("assistant", "call"), msg("tool", "42")], false).expect("render");
    assert!(with_tool.ends_with("<start_of_turn>user\n42<end_of_turn>\n"), "{with_tool}");
}

#[test]
fn builtin_templates_by_architecture() {
    let convo = [msg("system", "S"), msg("user", "U")];
    let chatml = ChatTemplate::builtin_for_arch("llama", "<s>", "</s>");
    assert_eq!(
        chatml.render(&convo, true).expect("render"),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    for arch in ["gemma", "gemma2", "gemma3"] {
        let g = ChatTemplate::builtin_for_arch(arch, "<bos>", "<eos>");
        assert_eq!(g.render(&convo, false).expect("render"), "<start_of_turn>user\nS\n\nU<end_of_turn>\n");
    }
    assert_eq!(chatml.render(&[], true).expect("render"), "<|im_start|>assistant\n");
}

#[test]
fn hugging_face_template_features_work() {
    // bos/eos variables, loop variables, namespace, python string methods, tojson
    let src = "{{ bos_token }}{% set ns = namespace(n=0) %}{% for m in messages %}\
               {% set ns.n = ns.n + 1 %}[{{ loop.index }}/{{ loop.length }} {{ m.role | upper }}:{{ m['content'].strip() }}]\
               {% if m.content.strip().startswith('x') %}X{% endif %}{% endfor %}{{ ns.n }}{{ messages[0] | tojson }}{{ eos_token }}";
    let t = ChatTemplate::from_source(src, "<s>", "</s>").expect("compiles");
    let out = t.render(&[msg("user", "  xy "), msg("assistant", "b")], false).expect("render");
    assert_eq!(out, r#"<s>[1/2 USER:xy]X[2/2 ASSISTANT:b]2{"role":"user","content":"  xy "}</s>"#);
    let t = ChatTemplate::from_source("{{ strftime_now('%Y') }}", "", "").expect("compiles");
    let year: i32 = t.render(&[], false).expect("render").parse().expect("a year");
    assert!(year >= 2024);
}

#[test]
fn literal_bos_in_a_template_is_detected() {
    let Some((_, tok)) = open("gemma-3-270m-q4_k_m.gguf") else { return };
    let t = ChatTemplate::from_source("{{ bos_token }}{{ messages[0].content }}", "<bos>", "<eos>").expect("compiles");
    let rendered = t.render(&[msg("user", "hi")], false).expect("render");
    assert!(t.starts_with_bos(&rendered, &tok));
    let ids = tok.encode(&rendered, false, true).expect("encode");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1, "exactly one BOS: {ids:?}");
}

#[test]
fn broken_templates_are_errors_not_crashes() {
    assert!(matches!(ChatTemplate::from_source("{% for m in messages %}", "", ""), Err(TemplateError::Syntax(_))));
    assert!(matches!(ChatTemplate::from_source("{{ 1 + }}", "", ""), Err(TemplateError::Syntax(_))));

    let raising = ChatTemplate::from_source("{{ raise_exception('roles must alternate') }}", "", "").expect("compiles");
    match raising.render(&[msg("user", "x")], true) {
        Err(TemplateError::Raised(m)) => assert!(m.contains("roles must alternate"), "{m}"),
        other => panic!("expected Raised, got {other:?}"),
    }

    let start = Instant::now();
    let runaway = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
    let t = ChatTemplate::from_source(runaway, "", "").expect("compiles");
    assert!(matches!(t.render(&[], false), Err(TemplateError::Render(_))));
    assert!(start.elapsed().as_secs_f64() < 2.0, "fuel must stop the loop quickly: {:?}", start.elapsed());

    let recursive = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let t = ChatTemplate::from_source(recursive, "", "").expect("compiles");
    assert!(t.render(&[], false).is_err());

    let huge = ChatTemplate::from_source("{{ 'x' * 1000000000 }}", "", "").expect("compiles");
    assert!(huge.render(&[], false).is_err());
    let big = ChatTemplate::from_source("{% for i in range(40) %}{{ 'y' * 90000 }}{% endfor %}", "", "").expect("compiles");
    assert!(matches!(big.render(&[], false), Err(TemplateError::TooLarge { .. })));

    // undefined variables and methods on the wrong type
    let t = ChatTemplate::from_source("{{ messages[0].content.nosuchmethod() }}", "", "").expect("compiles");
    assert!(t.render(&[msg("user", "x")], false).is_err());
    // missing variables and keys are lenient, as in Jinja2; attributes of undefined are not
    let t = ChatTemplate::from_source("{{ tools }}|{{ messages[0].nosuch }}", "", "").expect("compiles");
    assert_eq!(t.render(&[msg("user", "x")], false).expect("lenient undefined"), "|");
    let t = ChatTemplate::from_source("{{ messages[5].content }}", "", "").expect("compiles");
    assert!(t.render(&[], false).is_err());
}
