// `sqlx::migrate!` embeds the migrations; a new file must trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
