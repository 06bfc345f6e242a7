//! The README's settings tables are the ones generated from the settings'
//! declarations (`src/settings/declared.rs`): names, variables, defaults,
//! bounds and meanings. After changing a declaration, rewrite them with
//! `UPDATE_README=1 cargo test --test readme_settings`.

use std::path::Path;

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- settings table `{name}`: generated from src/settings/declared.rs (tests/readme_settings.rs) -->\n"),
        format!("<!-- end of settings table `{name}` -->"),
    )
}

#[test]
fn the_readme_settings_tables_match_the_declarations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let mut readme = std::fs::read_to_string(&path).expect("README.md is readable");
    let update = std::env::var_os("UPDATE_README").is_some();
    for (name, table) in switchboard::settings::readme_tables() {
        let (begin, end) = markers(name);
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("README.md has no line {begin:?}"))
            + begin.len();
        let stop = start
            + readme[start..]
                .find(&end)
                .unwrap_or_else(|| panic!("README.md has no line {end:?}"));
        if update {
            readme.replace_range(start..stop, &table);
        } else {
            assert_eq!(
                readme[start..stop],
                table,
                "README.md's settings table `{name}` differs from the declarations; \
                 run `UPDATE_README=1 cargo test --test readme_settings`"
            );
        }
    }
    if update {
        std::fs::write(&path, readme).expect("README.md is writable");
    }
}
