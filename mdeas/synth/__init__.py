"""The synthetic-world renderer and the dataset writers: `python -m mdeas.synth` renders scenes with exact depth,
`python -m mdeas.synth.compose` pastes real cut-outs onto real backgrounds; both write a canonical dataset zip."""
