//! Prints the kernel tiers this CPU can run, one name per line (what `scripts/test` loops over).
fn main() {
    for isa in pare_kernels::Isa::ALL.into_iter().filter(|i| i.is_available()) {
        println!("{isa}");
    }
}
