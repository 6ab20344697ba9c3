//! PLACEHOLDER until the front-end lands: the page with the data inserted.

pub const PAGE: &str = "<!doctype html><html><head><!--gotrace-data--></head><body></body></html>";

pub(crate) fn with_data(json: &str) -> String {
    PAGE.replacen(
        "<!--gotrace-data-->",
        &format!(
            "<script type=\"application/json\" id=\"gotrace-data\">{}</script>",
            json.replace("</", "<\\/")
        ),
        1,
    )
}
