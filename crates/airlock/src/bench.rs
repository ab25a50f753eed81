pub fn main(_a: BenchArgs) -> i32 {
    0
}
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}
