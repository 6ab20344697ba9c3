//! The web page of the live views and the report: one self-contained HTML file (scripts and
//! styles inlined, no external URL) built from `tracer-user/web/` by `build.rs` and embedded.
//! Served as it is, it fetches `api/page` relative to its own URL; written into an output
//! directory as `index.html`, it carries its data inline and reads nothing.

/// The page as built, with the data marker in its `<head>`.
pub const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/page.html"));

/// Where [`with_data`] puts the data: `web/build.mjs` checks it is in the template once, inside
/// `<head>`, so it is the first occurrence.
const MARKER: &str = "<!--gotrace-data-->";

/// The page with `json` (the `api/page` document) inline, for reading offline: the page renders
/// it once instead of fetching. Every `<` in the JSON is written `\u003c` (JSON has `<` only in
/// strings, where that escape means the same), so neither `</script>` nor `<!--` in a function
/// name or a path can end the script element or change how the HTML parser reads it.
pub fn with_data(json: &str) -> String {
    let script = format!(
        r#"<script type="application/json" id="gotrace-data">{}</script>"#,
        json.replace('<', r"\u003c")
    );
    PAGE.replacen(MARKER, &script, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_has_one_marker_in_its_head() {
        assert_eq!(PAGE.matches(MARKER).count(), 1);
        assert!(PAGE.find(MARKER).unwrap() < PAGE.find("</head>").unwrap());
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!PAGE.contains(external), "the page refers to {external}…");
        }
    }

    #[test]
    fn data_goes_into_the_head_and_cannot_close_its_script() {
        let json = r#"{"mode":"report","name":"a</script><script>alert(1)</script><!--x"}"#;
        let page = with_data(json);
        let start = page
            .find(r#"<script type="application/json" id="gotrace-data">"#)
            .unwrap();
        assert!(start < page.find("</head>").unwrap());
        assert!(!page.contains(MARKER));
        let body = &page[start..];
        let body = &body[body.find('>').unwrap() + 1..body.find("</script>").unwrap()];
        assert!(!body.contains('<'), "{body}");
        // What the page's JSON.parse reads is the document given.
        let back: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
        assert_eq!(
            page.len(),
            PAGE.len() - MARKER.len() + body.len() + start_len()
        );
    }

    fn start_len() -> usize {
        r#"<script type="application/json" id="gotrace-data"></script>"#.len()
    }
}
