"""What a stage hash covers: the stage's code and the helpers it really runs (`code`,
`references`), its parameters (`params`), its raw inputs' contents (`raw_files`, and
`url_inputs` for URLs), combined with its upstreams' hashes (`stage_hash`); and the
manifest of what went into a hash, which explains a rerun (`manifest`)."""
