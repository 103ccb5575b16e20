"""EuroSAT (Sentinel-2 land use, 10 classes)."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, read_and_split_data

# The class names of CoOp's split file (more descriptive than the folder names).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_filename = "split_zhou_EuroSAT.json"
    source = DatasetSource(
        config="eurosat",
        folder="eurosat",
        downloads=("http://madm.dfki.de/files/sentinel/EuroSAT.zip",),
        required=("2750",),
        split_file="split_zhou_EuroSAT.json",
        split_drive_id="1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o",
    )

    def create_split(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
