"""Fair retrieval maths: FairSync's dual vector and exposure accounting."""
