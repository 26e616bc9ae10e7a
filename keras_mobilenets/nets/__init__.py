"""The networks: architecture tables, typed rows, the block registry and its blocks, the one builder
loop, the Keras 3 / tf_keras flavors, argument validation, the public builders, weights, preprocessing
and feature taps. Imports nothing from the other rooms."""
