// Applied before the page paints, so a dark theme never flashes light.
document.documentElement.dataset.theme = localStorage.getItem("assay.theme")
  || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
