"""The vision-language model side: key pool, pacing, HTTP client, prompt and parser.
Nothing here imports Faust; the assessor agent wires these parts to Kafka."""
