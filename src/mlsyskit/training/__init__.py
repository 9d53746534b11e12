"""Training infrastructure: Minder, TrainMover, Optimus."""
