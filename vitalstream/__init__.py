"""vitalstream command line and local stack: the composition root."""
