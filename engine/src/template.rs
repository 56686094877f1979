//! Chat templates: the GGUF's `tokenizer.chat_template` (Jinja, as in Hugging
//! Face `tokenizer_config.json`) rendered with minijinja, or a built-in one for
//! models that carry none (Gemma's turn format, ChatML otherwise).
//!
//! Templates come from model files, so they are untrusted: the environment has
//! no loader (no file access), a fuel limit stops runaway loops, recursion is
//! bounded, and output size is capped. Errors are values, never panics.
//!
//! BOS: the built-in templates emit no BOS; tokenize their output with
//! `add_special = true, parse_special = true`. A file's template may write
//! `{{ bos_token }}` itself; then [`ChatTemplate::starts_with_bos`] is true and
//! the caller should tokenize with `add_special = false` to avoid a double BOS.

use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// Instruction budget for one render (minijinja "fuel"): ample for thousands
/// of messages, small enough to stop `{% for x in range(99999) %}` nests fast.
const FUEL: u64 = 1_000_000;
const RECURSION_LIMIT: usize = 64;
/// Output cap: 1 MiB plus twice the message text.
const BASE_OUTPUT_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("chat template output is {got} bytes, over the {limit} byte limit")]
    TooLarge { got: usize, limit: usize },
    #[error("chat template metadata: {0}")]
    Metadata(String),
}

/// One chat message. Unknown JSON fields (images, tool_calls, ...) are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.to_string(), content: content.to_string() }
    }
}

/// A compiled-once, render-many chat template.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
    builtin: bool,
}

/// Gemma's turn format (Google's official template without its BOS and its
/// strict user/assistant alternation): the system prompt is prepended to the
/// first user turn, `assistant` is `model`, any other role is a user turn.
const GEMMA_TEMPLATE: &str = "\
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] ~ '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = '' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}
    {{- '<start_of_turn>' ~ role ~ '\n' ~ (first_user_prefix if loop.first else '') -}}
    {{- message['content'] | trim -}}
    {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// ChatML (`<|im_start|>role\n...<|im_end|>\n`), llama.cpp's fallback.
const CHATML_TEMPLATE: &str = "\
{%- for message in messages -%}
    {{- '<|im_start|>' ~ message['role'] ~ '\n' ~ message['content'] ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}";

impl ChatTemplate {
    /// The file's `tokenizer.chat_template`, or the built-in one for its architecture.
    pub fn from_gguf(f: &GgufFile, tok: &Tokenizer) -> Result<ChatTemplate, TemplateError> {
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        let (bos, eos) = (text(tok.bos_id()), text(tok.eos_id()));
        if f.get("tokenizer.chat_template").is_some() {
            let src = f.get_str("tokenizer.chat_template").map_err(|e| TemplateError::Metadata(e.to_string()))?;
            return ChatTemplate::from_source(src, &bos, &eos);
        }
        let arch = f.get_str("general.architecture").unwrap_or("");
        Ok(ChatTemplate::builtin_for_arch(arch, &bos, &eos))
    }

    /// Compiles `src` once to report syntax errors now rather than at render time.
    pub fn from_source(src: &str, bos: &str, eos: &str) -> Result<ChatTemplate, TemplateError> {
        let t = ChatTemplate { source: src.to_string(), bos: bos.to_string(), eos: eos.to_string(), builtin: false };
        environment().template_from_str(src).map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(t)
    }

    /// Gemma's turn format for `gemma`, `gemma2`, `gemma3`, `gemma3n`; ChatML otherwise.
    pub fn builtin_for_arch(arch: &str, bos: &str, eos: &str) -> ChatTemplate {
        let source = if arch.starts_with("gemma") { GEMMA_TEMPLATE } else { CHATML_TEMPLATE };
        ChatTemplate { source: source.to_string(), bos: bos.to_string(), eos: eos.to_string(), builtin: true }
    }

    /// Renders the conversation; `add_generation_prompt` opens the assistant turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let env = environment();
        let tmpl = env.template_from_str(&self.source).map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        let out = tmpl.render(ctx).map_err(|e| classify(&e))?;
        let limit = BASE_OUTPUT_LIMIT + 2 * messages.iter().map(|m| m.content.len() + m.role.len()).sum::<usize>();
        if out.len() > limit {
            return Err(TemplateError::TooLarge { got: out.len(), limit });
        }
        Ok(out)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// True when `rendered` already begins with the model's BOS text and the
    /// tokenizer would add another: tokenize with `add_special = false` then.
    pub fn starts_with_bos(&self, rendered: &str, tok: &Tokenizer) -> bool {
        tok.add_bos() && !self.bos.is_empty() && rendered.starts_with(self.bos.as_str())
    }
}

/// The sandbox every template renders in: no loader, Jinja's HF settings
/// (`trim_blocks`, `lstrip_blocks`), Python string/dict methods, and the
/// helpers real templates call.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {msg}")))
    });
    env.add_function("strftime_now", |fmt: String| strftime_utc(&fmt, unix_now()));
    env
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn classify(e: &Error) -> TemplateError {
    let text = describe(e);
    match text.find("raise_exception: ") {
        Some(i) => TemplateError::Raised(text[i + "raise_exception: ".len()..].to_string()),
        None => TemplateError::Render(text),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A small `strftime` in UTC for templates that stamp today's date
/// (`strftime_now("%d %b %Y")` in Llama 3.x): %Y %y %m %d %e %H %I %M %S %p
/// %j %B %b %A %a %%; other specifiers are kept verbatim.
pub fn strftime_utc(fmt: &str, unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ];
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", if hh % 12 == 0 { 12 } else { hh % 12 })),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday
        let t = 1_709_211_909;
        assert_eq!(strftime_utc("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(strftime_utc("%d %b %Y, %A %j %I%p %%", t), "29 Feb 2024, Thursday 060 01PM %");
        assert_eq!(strftime_utc("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime_utc("%B %e %q", 0), "January  1 %q");
    }
}
