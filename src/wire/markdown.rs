//! Markdown source to safe HTML (placeholder: escapes only, until the renderer lands).

pub fn render(source: &str, _mentions: &[String]) -> String {
    let mut out = String::from("<p>");
    for c in source.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out.push_str("</p>");
    out
}

pub fn mentioned_names(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for word in source.split(|c: char| c.is_whitespace()) {
        if let Some(name) = word.strip_prefix('@') {
            let name = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) && names.len() < 32 {
                names.push(name.to_owned());
            }
        }
    }
    names
}

pub fn emoji_only(_source: &str) -> bool {
    false
}

pub fn excerpt(source: &str, max_chars: usize) -> String {
    let flat: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let mut cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
