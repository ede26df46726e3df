"""The competition as data: what its files say (`spec`, read from them by `read`), what they cannot say
(`known`, a registry of competitions), its metric (`metrics`) and the exact layout of its submission
(`layout`). Everything here reads CSVs and image names; nothing imports TensorFlow."""
