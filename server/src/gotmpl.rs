//! A small subset of Go's `text/template` for the `template` field of `/api/generate`:
//! `{{ .System }}`, `{{ .Prompt }}`, `{{ .Response }}` (everything from it on is cut, leaving the
//! prompt open), `{{ if .X }}...{{ else }}...{{ end }}` (nestable) and `{{-`/`-}}` trimming.
//! Anything else is a 400 naming the action.

use crate::error::ApiError;

enum Tok<'a> {
    Text(&'a str),
    Action(&'a str),
}

fn lex(src: &str) -> Result<Vec<Tok<'_>>, ApiError> {
    let mut toks = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        toks.push(Tok::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| ApiError::bad_request("template: unclosed action"))?;
        toks.push(Tok::Action(&after[..close]));
        rest = &after[close + 2..];
    }
    toks.push(Tok::Text(rest));
    // Apply trim markers to the neighbouring text.
    let n = toks.len();
    let mut trims = vec![(false, false); n];
    for (i, t) in toks.iter().enumerate() {
        if let Tok::Action(a) = t {
            trims[i] = (a.starts_with('-'), a.ends_with('-'));
        }
    }
    for i in 0..n {
        if let Tok::Text(s) = toks[i] {
            let mut s = s;
            if i > 0 && trims[i - 1].1 {
                s = s.trim_start();
            }
            if i + 1 < n && trims[i + 1].0 {
                s = s.trim_end();
            }
            toks[i] = Tok::Text(s);
        }
    }
    Ok(toks)
}

/// Renders `template` with `.System` and `.Prompt`; stops at `{{ .Response }}`.
pub fn render(template: &str, system: &str, prompt: &str) -> Result<String, ApiError> {
    let value = |name: &str| -> Result<&str, ApiError> {
        match name {
            ".System" => Ok(system),
            ".Prompt" => Ok(prompt),
            ".Response" | ".Suffix" => Ok(""),
            other => Err(ApiError::bad_request(format!("template: unsupported field {other:?}"))),
        }
    };
    let mut out = String::new();
    // Stack of (this branch active, some branch already taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|(a, _)| *a);
    for tok in lex(template)? {
        match tok {
            Tok::Text(s) => {
                if active(&stack) {
                    out.push_str(s);
                }
            }
            Tok::Action(a) => {
                let a = a.trim_start_matches('-').trim_end_matches('-').trim();
                if let Some(cond) = a.strip_prefix("if ") {
                    let taken = !value(cond.trim())?.is_empty();
                    stack.push((taken, taken));
                } else if a == "else" {
                    let top = stack.last_mut().ok_or_else(|| ApiError::bad_request("template: else without if"))?;
                    *top = (!top.1, true);
                } else if a == "end" {
                    stack.pop().ok_or_else(|| ApiError::bad_request("template: end without if"))?;
                } else if a == ".Response" {
                    if active(&stack) {
                        return Ok(out);
                    }
                } else if a.starts_with('.') {
                    if active(&stack) {
                        out.push_str(value(a)?);
                    }
                } else {
                    return Err(ApiError::bad_request(format!("template: unsupported action {a:?}")));
                }
            }
        }
    }
    if !stack.is_empty() {
        return Err(ApiError::bad_request("template: missing end"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_like_template() {
        let t = "{{ if .System }}<|system|>{{ .System }}\n{{ end }}<|user|>{{ .Prompt }}\n<|assistant|>{{ .Response }}<|end|>";
        assert_eq!(render(t, "", "hi").unwrap(), "<|user|>hi\n<|assistant|>");
        assert_eq!(render(t, "be brief", "hi").unwrap(), "<|system|>be brief\n<|user|>hi\n<|assistant|>");
    }

    #[test]
    fn trims_else_and_errors() {
        assert_eq!(render("A  {{- .Prompt -}}  B", "", "x").unwrap(), "AxB");
        assert_eq!(render("{{if .System}}S{{else}}none{{end}}:{{.Prompt}}", "", "p").unwrap(), "none:p");
        assert!(render("{{ range .Messages }}{{ end }}", "", "p").is_err());
        assert!(render("{{ if .System }}x", "", "p").is_err());
        assert!(render("{{ .Prompt", "", "p").is_err());
        assert!(render("{{ end }}", "", "p").is_err());
    }
}
