// placeholder so the layer library exists before its sources land
