//! Rebuilds when a migration is added: the migrations are embedded by `sqlx::migrate!`.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
