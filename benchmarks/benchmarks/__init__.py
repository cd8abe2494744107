"""asv benchmarks of aefast; configuration in ../asv.conf.json (run asv from benchmarks/)."""
