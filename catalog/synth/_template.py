"""Skeleton of an L2A METADATA.XML (element paths of DLR's ground processor output).

Trimmed from a real L2A METADATA.XML (schema 00.02.00): the orbit/attitude,
line-time, RPC and band-statistics sections are left out, band and file lists
hold one entry each and are rebuilt per product. Values are overwritten.
"""

TEMPLATE = """\
<level_X xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="metadata_Lx_00-02-00.xsd">
  <metadata>
    <schema>
      <copyright>(c) DLR EnMAP 2019</copyright>
      <versionSchema>00.02.00</versionSchema>
      <name>metadata_Lx_00-02-00.xsd</name>
      <crc>537B11B4</crc>
      <processingLevel>L2A</processingLevel>
    </schema>
    <name>{STEM}-METADATA.XML</name>
    <comment>EnMAP Level 2A Product of datatake 326721, tile 1</comment>
    <copyright>(c) DLR EnMAP 2019</copyright>
    <citation>DLR (2020): EnMAP Product 000326721_01_2A_20170626T112025_000204_200406+U0BLNNTS300G. doi:10.15489/rlyibn8gjc58</citation>
  </metadata>
  <processing>
    <terrainCorrection>Yes</terrainCorrection>
    <ozoneValue>300</ozoneValue>
    <season>summer</season>
    <productFormat>GeoTIFF+Metadata</productFormat>
    <mapProjection>UTM_Zone_of_Scene_Center</mapProjection>
    <imageResampling>Bilinear_Interpolation</imageResampling>
    <DEMDBVersion>SRTM_C1ARC</DEMDBVersion>
    <correctionType>Land_Mode</correctionType>
    <cirrusHazeRemoval>No</cirrusHazeRemoval>
    <bandInterpolation>No</bandInterpolation>
    <waterType>Turbid</waterType>
  </processing>
  <base>
    <spatialCoverage>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7875252</latitude>
          <longitude unit="DEG">10.7960234</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">47.5192797</latitude>
          <longitude unit="DEG">10.7108641</longitude>
          <utcTime>2017-06-26T10:20:25.545157Z</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">47.4554646</latitude>
          <longitude unit="DEG">11.0813528</longitude>
          <utcTime>2017-06-26T10:20:25.545157Z</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">47.7235135</latitude>
          <longitude unit="DEG">11.1687202</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.787525214</latitude>
          <longitude unit="DEG">10.796023441</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">47.6216059</latitude>
          <longitude unit="DEG">10.9392424</longitude>
          <utcTime>2017-06-26T10:20:23.272547Z</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverage>
    <temporalCoverage>
      <startTime>2017-06-26T10:20:20.999936Z</startTime>
      <stopTime>2017-06-26T10:20:25.545157Z</stopTime>
    </temporalCoverage>
    <revision>00.02.04</revision>
    <altitudeCoverage>628888.37</altitudeCoverage>
    <sphere>earth</sphere>
    <format>ENMAP_L2A</format>
    <level>L2A</level>
    <size>663572413</size>
    <archivedVersion>00.02.04</archivedVersion>
  </base>
  <specific>
    <spatialCoverageOfDatatake>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7873372587</latitude>
          <longitude unit="DEG">10.7962026829</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">46.9816134114</latitude>
          <longitude unit="DEG">10.5260205351</longitude>
          <utcTime>2017-06-26T10:20:34.512331Z</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">46.9181474402</latitude>
          <longitude unit="DEG">10.8930286214</longitude>
          <utcTime>2017-06-26T10:20:34.512331Z</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">47.723338236</latitude>
          <longitude unit="DEG">11.1687523467</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7873372587</latitude>
          <longitude unit="DEG">10.7962026829</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">47.3526090866</latitude>
          <longitude unit="DEG">10.8460010465</longitude>
          <utcTime>2017-06-26T10:20:27.756134000</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverageOfDatatake>
    <qualityFlag>
      <spare_1>-999</spare_1>
      <spare_2>-999</spare_2>
      <spare_3>-999</spare_3>
      <sensorLogVNIR>-999</sensorLogVNIR>
      <processorLogVNIR>0</processorLogVNIR>
      <overallQualityVNIR>0</overallQualityVNIR>
      <deadPixelsVNIR>0</deadPixelsVNIR>
      <defectivePixelsVNIR>0</defectivePixelsVNIR>
      <generalArtifactsVNIR>0</generalArtifactsVNIR>
      <saturationCrosstalkVNIR>0</saturationCrosstalkVNIR>
      <stripingBandingVNIR>0</stripingBandingVNIR>
      <qualityRadiometryVNIR>0</qualityRadiometryVNIR>
      <smileIndicationVNIR>-999</smileIndicationVNIR>
      <sensorLogSWIR>-999</sensorLogSWIR>
      <processorLogSWIR>0</processorLogSWIR>
      <deadPixelsSWIR>0</deadPixelsSWIR>
      <defectivePixelsSWIR>0</defectivePixelsSWIR>
      <generalArtifactsSWIR>0</generalArtifactsSWIR>
      <saturationCrosstalkSWIR>0</saturationCrosstalkSWIR>
      <stripingBandingSWIR>0</stripingBandingSWIR>
      <overallQualitySWIR>0</overallQualitySWIR>
      <qualityRadiometrySWIR>0</qualityRadiometrySWIR>
      <smileIndicationSWIR>-999</smileIndicationSWIR>
      <overallQuality>1</overallQuality>
      <numTilesUsed>3</numTilesUsed>
      <levelOfRejection>2</levelOfRejection>
      <numPointsGCP>607</numPointsGCP>
      <numPointsICP>2271</numPointsICP>
      <numPointsAll>2878</numPointsAll>
      <numPointsDiscardedGCP>3</numPointsDiscardedGCP>
      <orthoResidual>10</orthoResidual>
      <orthoResidual_x>9</orthoResidual_x>
      <orthoResidual_y>5</orthoResidual_y>
      <orthoMean>0</orthoMean>
      <orthoMean_x>0</orthoMean_x>
      <orthoMean_y>0</orthoMean_y>
      <orthoRMSE>39</orthoRMSE>
      <orthoRMSE_x>9</orthoRMSE_x>
      <orthoRMSE_y>38</orthoRMSE_y>
      <sceneSZA>26.961616</sceneSZA>
      <qualityAtmosphere>1</qualityAtmosphere>
      <orthoTerrain>0</orthoTerrain>
      <sceneSunglint>-999</sceneSunglint>
      <cloudCover>0</cloudCover>
      <hazeCover>0</hazeCover>
      <cirrusCover>0</cirrusCover>
      <snowCover>0</snowCover>
      <waterCover>2</waterCover>
      <cloudShadow>8</cloudShadow>
      <noncloudShadow>0</noncloudShadow>
      <sceneWV>2159</sceneWV>
      <sceneAOT>190</sceneAOT>
      <sceneAtmParam>0</sceneAtmParam>
      <sceneTerrain>0</sceneTerrain>
    </qualityFlag>
    <instrumentStatus>
      <statusOK>true</statusOK>
      <statusVNIR>on</statusVNIR>
      <statusSWIR>on</statusSWIR>
      <configVNIR>standard</configVNIR>
      <configSWIR>standard</configSWIR>
      <statusSCM>OK</statusSCM>
      <statusDiffuserProtectionHatch>OK</statusDiffuserProtectionHatch>
      <statusSunDiffuserHatch>OK</statusSunDiffuserHatch>
      <emergencyStatusOfSCM>0</emergencyStatusOfSCM>
      <emergencyStatusOfSSM>0</emergencyStatusOfSSM>
      <emergencyStatusOfSDH>0</emergencyStatusOfSDH>
      <SWIRAOrSWIRBSelected>SWIRA</SWIRAOrSWIRBSelected>
      <mcsSequenceType>1</mcsSequenceType>
    </instrumentStatus>
    <productQuality>
      <screeningResult>
        <status>FAILED</status>
        <failedGroups>STATUS</failedGroups>
      </screeningResult>
      <screeningResultTemp>
        <listOfTemps>
          <parameter name="VNIR_HK_SA_T7_CIS_PT_1">
            <description>Temperature VNIR Sensor Assembly, PTAT 1</description>
            <device>VNIR</device>
            <units>degC</units>
            <status>OK</status>
            <value>21.8</value>
            <minValue>22.4</minValue>
            <maxValue>23.2</maxValue>
          </parameter>
          <parameter name="SWIR_TFPA1">
            <description>SWIR FPA temperature 1</description>
            <device>SWIR</device>
            <units>degC</units>
            <status>OK</status>
            <value>21.1</value>
            <minValue>20.4</minValue>
            <maxValue>21.9</maxValue>
          </parameter>
        </listOfTemps>
        <status>OK</status>
      </screeningResultTemp>
      <screeningResultCurr>
        <listOfCurrents>
          <parameter name="CCS_01_I">
            <description>Current CCS 01</description>
            <device>IPU</device>
            <units>mA</units>
            <status>OK</status>
            <value>310.3</value>
            <minValue>308.5</minValue>
            <maxValue>311.9</maxValue>
          </parameter>
        </listOfCurrents>
        <status>OK</status>
      </screeningResultCurr>
      <screeningResultVolt>
        <listOfVoltages>
          <parameter name="CCS_01_V">
            <description>Voltage CCS 01</description>
            <device>IPU</device>
            <units>V</units>
            <status>OK</status>
            <value>5.1</value>
            <minValue>5.0</minValue>
            <maxValue>5.2</maxValue>
          </parameter>
        </listOfVoltages>
        <status>OK</status>
      </screeningResultVolt>
      <screeningResultDevStatus>
        <listOfDevStatus>
          <parameter name="SW_Op_HK_Status">
            <description>Validity status of HK channels ICPU, IPU, VNIR, and SWIR</description>
            <device>OTHER</device>
            <units>1</units>
            <status>OK</status>
            <info />
            <value>15</value>
            <minValue>15</minValue>
            <maxValue>15</maxValue>
          </parameter>
          <parameter name="TCS_Inhibit_Health_A">
            <description>Health indication array of cavity heaters</description>
            <device>OTHER</device>
            <units>1</units>
            <status>FAILED</status>
            <info>Major deviations from reference value (100.0 %)</info>
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
          <parameter name="TCS_Sensor_Health_A">
            <description>Sensor health indication array</description>
            <device>OTHER</device>
            <units>1</units>
            <status>FAILED</status>
            <info>Major deviations from reference value (100.0 %)</info>
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
          <parameter name="IPU_Status_8_A">
            <description>Status of OTA level 2</description>
            <device>OTHER</device>
            <units>1</units>
            <status>OK</status>
            <info />
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
        </listOfDevStatus>
        <status>FAILED</status>
      </screeningResultDevStatus>
    </productQuality>
    <vnirProductQuality>
      <vnirProductStatus>OK</vnirProductStatus>
      <vnirDarkBeforeQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </vnirDarkBeforeQuality>
      <vnirDarkAfterQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </vnirDarkAfterQuality>
      <numChannelsExpected>88</numChannelsExpected>
      <expectedChannelsList>1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,80,82,84,86,87,89,91,93,95,96</expectedChannelsList>
      <numChannelsMissing>0</numChannelsMissing>
      <missingChannelsList />
    </vnirProductQuality>
    <swirProductQuality>
      <swirProductStatus>OK</swirProductStatus>
      <swirDarkBeforeQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </swirDarkBeforeQuality>
      <swirDarkAfterQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </swirDarkAfterQuality>
      <numChannelsExpected>130</numChannelsExpected>
      <expectedChannelsList>79,81,83,85,88,90,92,94,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150,151,152,153,154,155,156,157,158,159,160,161,162,163,164,165,166,167,168,169,170,171,172,173,174,175,176,177,178,179,180,181,182,183,184,185,186,187,188,189,190,191,192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216,217,218</expectedChannelsList>
      <numChannelsMissing>0</numChannelsMissing>
      <missingChannelsList />
    </swirProductQuality>
    <downlink>
      <dtakeNumMissingIsps>0</dtakeNumMissingIsps>
      <dtakeNumErrorIsps>0</dtakeNumErrorIsps>
    </downlink>
    <auxDataVersion>
      <orbitVersion>00.00.00</orbitVersion>
      <attitudeVersion>00.00.00</attitudeVersion>
      <calTabAtmSpecVersion>01.00.00</calTabAtmSpecVersion>
      <calTabGeoVersion>01.00.00</calTabGeoVersion>
      <calTabRadVersion>01.00.00</calTabRadVersion>
      <calTabLinearityVersion>01.00.00</calTabLinearityVersion>
      <calTabDeepSpaceVersion>01.00.00</calTabDeepSpaceVersion>
      <calTabDPMVersion>01.00.00</calTabDPMVersion>
      <refTabDarkVersion>01.00.00</refTabDarkVersion>
    </auxDataVersion>
    <inputDatatake>
      <datatakeAssemblyTime>2017-06-26T12:20:25.000000Z</datatakeAssemblyTime>
      <datatakeRevision>07.00.32</datatakeRevision>
    </inputDatatake>
    <missionPhase>pre-launch</missionPhase>
    <processingCenter>OP</processingCenter>
    <processingNode>latest.shockley</processingNode>
    <processingDateTime>2020-04-06T20:19:30.939073Z</processingDateTime>
    <archivingStation>DUMMY</archivingStation>
    <archivingDateTime>0001-01-01T00:00:00.000000Z</archivingDateTime>
    <receivingStations>NSG</receivingStations>
    <receivingDateTime>2017-06-26T11:20:25.000000Z</receivingDateTime>
    <mission>EnMAP</mission>
    <satelliteID>01</satelliteID>
    <sensor>HSI</sensor>
    <datatakeID>0000326721</datatakeID>
    <imageID>000000123</imageID>
    <cyclogramType>EARTH</cyclogramType>
    <cyclogramVersion>000</cyclogramVersion>
    <MCSequenceId>001</MCSequenceId>
    <macrocommandVersion>000</macrocommandVersion>
    <numberOfSWIRBands>130</numberOfSWIRBands>
    <numberOfVNIRBands>88</numberOfVNIRBands>
    <acquisitionType>EARTH</acquisitionType>
    <acquisitionSubtype>earth</acquisitionSubtype>
    <productType>STANDARD_ALL</productType>
    <compressionType>COMPRESSED</compressionType>
    <datatakeStart>2017-06-26T10:20:20.999936Z</datatakeStart>
    <datatakeStop>2017-06-26T10:20:34.512331Z</datatakeStop>
    <backgroundValue>0</backgroundValue>
    <tileID>01</tileID>
    <numberOfTiles>03</numberOfTiles>
    <widthOfScene unit="pixel">1000</widthOfScene>
    <heightOfScene unit="pixel">1024</heightOfScene>
    <status>NOMINAL</status>
    <orbitNo>13842</orbitNo>
    <meanGroundElevation>1039.77677701</meanGroundElevation>
    <digitalElevationModelDatabase>SRTM_C1ARC</digitalElevationModelDatabase>
    <digitalElevationModelDatabaseAccuracy>16</digitalElevationModelDatabaseAccuracy>
    <referenceDatabase>S2</referenceDatabase>
    <referenceImageDatabaseAccuracy>10</referenceImageDatabaseAccuracy>
    <sunElevationAngle>
      <upper_left unit="DEG">62.843017</upper_left>
      <upper_right unit="DEG">63.025996</upper_right>
      <lower_right unit="DEG">63.232013</lower_right>
      <lower_left unit="DEG">63.048052</lower_left>
      <center unit="DEG">63.038384</center>
    </sunElevationAngle>
    <sunAzimuthAngle>
      <upper_left unit="DEG">148.98072</upper_left>
      <upper_right unit="DEG">149.614311</upper_right>
      <lower_right unit="DEG">149.224083</lower_right>
      <lower_left unit="DEG">148.59262</lower_left>
      <center unit="DEG">149.106702</center>
    </sunAzimuthAngle>
    <acrossOffNadirAngle>
      <upper_left unit="DEG">1.27641076292</upper_left>
      <upper_right unit="DEG">-1.35358251158</upper_right>
      <lower_right unit="DEG">-1.4507597324</lower_right>
      <lower_left unit="DEG">1.17928885285</lower_left>
      <center unit="DEG">-0.0871606570525</center>
    </acrossOffNadirAngle>
    <alongOffNadirAngle>
      <upper_left unit="DEG">-0.0692040225255</upper_left>
      <upper_right unit="DEG">-0.0695301149423</upper_right>
      <lower_right unit="DEG">-0.167785438271</lower_right>
      <lower_left unit="DEG">-0.16870825914</lower_left>
      <center unit="DEG">-0.11880695872</center>
    </alongOffNadirAngle>
    <sceneAzimuthAngle>
      <upper_left unit="DEG">14.2906888082</upper_left>
      <upper_right unit="DEG">14.2906888082</upper_right>
      <lower_right unit="DEG">14.2149804324</lower_right>
      <lower_left unit="DEG">14.2149804324</lower_left>
      <center unit="DEG">14.2528346203</center>
    </sceneAzimuthAngle>
    <orbitDirection>DESCENDING</orbitDirection>
    <pixelSize>30</pixelSize>
    <biomeType>Temperate Broadleaf and Mixed Forests</biomeType>
    <processible>1</processible>
    <orbitType>determined</orbitType>
    <acquisitionMode>earth</acquisitionMode>
    <code>L2A</code>
    <URLToProductType>enmap.org/product_STANDARD_ALL</URLToProductType>
    <spatialCoverageOfOrthoScene>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113521</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">0.0004281</latitude>
          <longitude unit="DEG">4.511352</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">0.000428</latitude>
          <longitude unit="DEG">4.5113561</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113562</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113521</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">0.0004295</latitude>
          <longitude unit="DEG">4.5113541</longitude>
          <utcTime>NA</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverageOfOrthoScene>
    <bandCharacterisation>
      <bandID number="1">
        <wavelengthCenterOfBand>423.03</wavelengthCenterOfBand>
        <FWHMOfBand>6.93</FWHMOfBand>
        <GainOfBand>0.0001</GainOfBand>
        <OffsetOfBand>0</OffsetOfBand>
      </bandID>
    </bandCharacterisation>
    <pixelSizeOfOrthoScene>30</pixelSizeOfOrthoScene>
    <widthOfOrthoScene>1128</widthOfOrthoScene>
    <heightOfOrthoScene>1212</heightOfOrthoScene>
    <meanSlope>14.59</meanSlope>
  </specific>
  <product>
    <image>
      <merge>
        <channels>218</channels>
        <name>{STEM}-SPECTRAL_IMAGE.TIF</name>
        <size unit="Kbyte">596082</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.3320606</longitude>
          <latitude unit="DEG">0.3320606</latitude>
        </dimensionGeographic>
        <qlChannelsSWIR>
          <red>2201</red>
          <green>1645.3</green>
          <blue>1051.3</blue>
        </qlChannelsSWIR>
        <qlChannelsVNIR>
          <red>847.1</red>
          <green>671.21</green>
          <blue>548.06</blue>
        </qlChannelsVNIR>
      </merge>
    </image>
    <quicklook>
      <vnir>
        <channels>3</channels>
        <qlChannels>
          <red>847.1</red>
          <green>671.21</green>
          <blue>548.06</blue>
        </qlChannels>
        <name>{STEM}-QL_VNIR.TIF</name>
        <size unit="Kbyte">8212</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.332060614</longitude>
          <latitude unit="DEG">0.332060614</latitude>
        </dimensionGeographic>
      </vnir>
      <swir>
        <channels>3</channels>
        <qlChannels>
          <red>2201</red>
          <green>1645.3</green>
          <blue>1051.3</blue>
        </qlChannels>
        <name>{STEM}-QL_SWIR.TIF</name>
        <size unit="Kbyte">8212</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.332060614</longitude>
          <latitude unit="DEG">0.332060614</latitude>
        </dimensionGeographic>
      </swir>
    </quicklook>
    <matching>
      <match ident="16">
        <points>227</points>
        <percent>71.4</percent>
      </match>
      <match ident="8">
        <points>871</points>
        <percent>84.4</percent>
      </match>
      <match ident="4">
        <points>3082</points>
        <percent>74.7</percent>
      </match>
      <match ident="2">
        <points>7707</points>
        <percent>66.7</percent>
      </match>
      <match ident="1">
        <points>10003</points>
        <percent>59.1</percent>
      </match>
      <pyramidLevel>16</pyramidLevel>
    </matching>
    <ortho>
      <projection>UTM_Zone32_North</projection>
      <resolution>30</resolution>
      <resampling>bilinear</resampling>
    </ortho>
    <productFileInformation>
      <file number="1">
        <name>{STEM}-METADATA.XML</name>
        <size unit="Kbyte">4181</size>
        <version>00.02.04</version>
        <format>xml</format>
      </file>
    </productFileInformation>
  </product>
</level_X>
"""


SECTIONS = """\
<sections>
<calibration>
 <orbit>
  <stateVector num="1" maneuver="0" qualInd="1" _n="6030">
   <timeUTC>2017-06-26T09:30:21.000000Z</timeUTC>
   <timeGPS>1182504639</timeGPS>
   <timeGPSFraction>0.0</timeGPSFraction>
   <posX>-3913882.36613</posX>
   <posY>-1827133.76488</posY>
   <posZ>-5557217.50158</posZ>
   <velX>-6079.24013918</velX>
   <velY>-634.485184122</velY>
   <velZ>4494.66783247</velZ>
  </stateVector>
  <absOrbit>13842</absOrbit>
  <phase>1</phase>
  <timeInterval>1.0</timeInterval>
  <positionAccuracy>10.0</positionAccuracy>
  <velocityAccuracy>0.01</velocityAccuracy>
 </orbit>
 <attitude>
  <attitudeDataRefFrames>
   <fromFrame>MECH</fromFrame>
   <toFrame>WGS84</toFrame>
  </attitudeDataRefFrames>
  <stateVector num="1" sensor="STS1" qualInd="1" _n="32">
   <timeUTC>2017-06-26T10:20:07.003600Z</timeUTC>
   <timeGPS>1182507625</timeGPS>
   <timeGPSFraction>0.00359988212585</timeGPSFraction>
   <q0>0.930678065906</q0>
   <q1>0.125108951442</q1>
   <q2>-0.329259115385</q2>
   <q3>0.0988661865674</q3>
  </stateVector>
  <accuracy>0.01</accuracy>
  <timeInterval>1.000</timeInterval>
 </attitude>
</calibration>
<navigation>
 <boresight>
  <swir>
   <instrumentMountingAngles>
    <initialValues>
     <OMEGA_INIT unit="DEG">0.0</OMEGA_INIT>
     <PHI_INIT unit="DEG">0.0</PHI_INIT>
     <KAPPA_INIT unit="DEG">0.0</KAPPA_INIT>
    </initialValues>
    <variationValues>
     <N_X_0>0.0</N_X_0>
     <N_Y_0>0.0</N_Y_0>
     <N_Z_0>0.0</N_Z_0>
     <N_X_1>0.0</N_X_1>
     <N_Y_1>0.0</N_Y_1>
     <N_Z_1>0.0</N_Z_1>
     <N_X_2>0.0</N_X_2>
     <N_Y_2>0.0</N_Y_2>
     <N_Z_2>0.0</N_Z_2>
     <N_X_3>0.0</N_X_3>
     <N_Y_3>0.0</N_Y_3>
     <N_Z_3>0.0</N_Z_3>
     <N_X_4>0.0</N_X_4>
     <N_Y_4>0.0</N_Y_4>
     <N_Z_4>0.0</N_Z_4>
     <N_X_5>0.0</N_X_5>
     <N_Y_5>0.0</N_Y_5>
     <N_Z_5>0.0</N_Z_5>
     <N_X_6>0.0</N_X_6>
     <N_Y_6>0.0</N_Y_6>
     <N_Z_6>0.0</N_Z_6>
     <N_X_7>0.0</N_X_7>
     <N_Y_7>0.0</N_Y_7>
     <N_Z_7>0.0</N_Z_7>
     <N_X_8>0.0</N_X_8>
     <N_Y_8>0.0</N_Y_8>
     <N_Z_8>0.0</N_Z_8>
     <N_X_9>0.0</N_X_9>
     <N_Y_9>0.0</N_Y_9>
     <N_Z_9>0.0</N_Z_9>
     <N_X_10>0.0</N_X_10>
     <N_Y_10>0.0</N_Y_10>
     <N_Z_10>0.0</N_Z_10>
    </variationValues>
    <estimatedValues>
     <OMEGA_EST unit="DEG">0.002003</OMEGA_EST>
     <PHI_EST unit="DEG">-0.002993</PHI_EST>
     <KAPPA_EST unit="DEG">0.00892</KAPPA_EST>
    </estimatedValues>
   </instrumentMountingAngles>
  </swir>
  <vnir>
   <instrumentMountingAngles>
    <initialValues>
     <OMEGA_INIT unit="DEG">0.0</OMEGA_INIT>
     <PHI_INIT unit="DEG">0.0</PHI_INIT>
     <KAPPA_INIT unit="DEG">0.0</KAPPA_INIT>
    </initialValues>
    <variationValues>
     <N_X_0>0.0</N_X_0>
     <N_Y_0>0.0</N_Y_0>
     <N_Z_0>0.0</N_Z_0>
     <N_X_1>0.0</N_X_1>
     <N_Y_1>0.0</N_Y_1>
     <N_Z_1>0.0</N_Z_1>
     <N_X_2>0.0</N_X_2>
     <N_Y_2>0.0</N_Y_2>
     <N_Z_2>0.0</N_Z_2>
     <N_X_3>0.0</N_X_3>
     <N_Y_3>0.0</N_Y_3>
     <N_Z_3>0.0</N_Z_3>
     <N_X_4>0.0</N_X_4>
     <N_Y_4>0.0</N_Y_4>
     <N_Z_4>0.0</N_Z_4>
     <N_X_5>0.0</N_X_5>
     <N_Y_5>0.0</N_Y_5>
     <N_Z_5>0.0</N_Z_5>
     <N_X_6>0.0</N_X_6>
     <N_Y_6>0.0</N_Y_6>
     <N_Z_6>0.0</N_Z_6>
     <N_X_7>0.0</N_X_7>
     <N_Y_7>0.0</N_Y_7>
     <N_Z_7>0.0</N_Z_7>
     <N_X_8>0.0</N_X_8>
     <N_Y_8>0.0</N_Y_8>
     <N_Z_8>0.0</N_Z_8>
     <N_X_9>0.0</N_X_9>
     <N_Y_9>0.0</N_Y_9>
     <N_Z_9>0.0</N_Z_9>
     <N_X_10>0.0</N_X_10>
     <N_Y_10>0.0</N_Y_10>
     <N_Z_10>0.0</N_Z_10>
    </variationValues>
    <estimatedValues>
     <OMEGA_EST unit="DEG">0.002003</OMEGA_EST>
     <PHI_EST unit="DEG">-0.002993</PHI_EST>
     <KAPPA_EST unit="DEG">0.00892</KAPPA_EST>
    </estimatedValues>
   </instrumentMountingAngles>
  </vnir>
 </boresight>
 <interiorOrientation>
  <vnir>
   <A_1_X>0.026857394</A_1_X>
   <A_1_Y>-1.317634195</A_1_Y>
   <A_2_X>0.0</A_2_X>
   <A_2_Y>0.0</A_2_Y>
   <A_3_X>0.0</A_3_X>
   <A_3_Y>0.0</A_3_Y>
   <B_1_X>-0.000107322</B_1_X>
   <B_1_Y>0.002627372</B_1_Y>
   <B_2_X>0.0</B_2_X>
   <B_2_Y>0.0</B_2_Y>
   <B_3_X>0.0</B_3_X>
   <B_3_Y>0.0</B_3_Y>
   <C_1_X>1.07215e-07</C_1_X>
   <C_1_Y>5.262e-09</C_1_Y>
   <C_2_X>0.0</C_2_X>
   <C_2_Y>0.0</C_2_Y>
   <C_3_X>0.0</C_3_X>
   <C_3_Y>0.0</C_3_Y>
  </vnir>
  <swir>
   <A_1_X>0.026857394</A_1_X>
   <A_1_Y>-1.317634195</A_1_Y>
   <A_2_X>0.0</A_2_X>
   <A_2_Y>0.0</A_2_Y>
   <A_3_X>0.0</A_3_X>
   <A_3_Y>0.0</A_3_Y>
   <B_1_X>-0.000107322</B_1_X>
   <B_1_Y>0.002627372</B_1_Y>
   <B_2_X>0.0</B_2_X>
   <B_2_Y>0.0</B_2_Y>
   <B_3_X>0.0</B_3_X>
   <B_3_Y>0.0</B_3_Y>
   <C_1_X>1.07215e-07</C_1_X>
   <C_1_Y>5.262e-09</C_1_Y>
   <C_2_X>0.0</C_2_X>
   <C_2_Y>0.0</C_2_Y>
   <C_3_X>0.0</C_3_X>
   <C_3_Y>0.0</C_3_Y>
  </swir>
 </interiorOrientation>
 <RPC>
  <bandID number="1" _n="218">
   <ROW_OFF>512.0000000000</ROW_OFF>
   <COL_OFF>500.0000000000</COL_OFF>
   <LAT_OFF>47.6256020945</LAT_OFF>
   <LONG_OFF>10.9371050116</LONG_OFF>
   <HEIGHT_OFF>1792.4974941261</HEIGHT_OFF>
   <ROW_SCALE>517.1199951172</ROW_SCALE>
   <COL_SCALE>504.9999952316</COL_SCALE>
   <LAT_SCALE>0.1653056884</LAT_SCALE>
   <LONG_SCALE>0.2272712079</LONG_SCALE>
   <HEIGHT_SCALE>1507.4228814314</HEIGHT_SCALE>
   <ROW_NUM_01>3.289674862860473e-03</ROW_NUM_01>
   <ROW_NUM_02>-2.750158980421163e-01</ROW_NUM_02>
   <ROW_NUM_03>-1.167389271593728e+00</ROW_NUM_03>
   <ROW_NUM_04>-2.821781425495592e-04</ROW_NUM_04>
   <ROW_NUM_05>3.939956440957156e-03</ROW_NUM_05>
   <ROW_NUM_06>2.618954949189879e-04</ROW_NUM_06>
   <ROW_NUM_07>1.145814493068230e-03</ROW_NUM_07>
   <ROW_NUM_08>-2.939227879755718e-02</ROW_NUM_08>
   <ROW_NUM_09>-4.355751052828223e-03</ROW_NUM_09>
   <ROW_NUM_10>2.912088594335504e-07</ROW_NUM_10>
   <ROW_NUM_11>4.628012793773741e-05</ROW_NUM_11>
   <ROW_NUM_12>-3.160036168879031e-04</ROW_NUM_12>
   <ROW_NUM_13>7.563974946710062e-05</ROW_NUM_13>
   <ROW_NUM_14>-7.200758741404982e-07</ROW_NUM_14>
   <ROW_NUM_15>-4.484138650903947e-04</ROW_NUM_15>
   <ROW_NUM_16>-2.709753344542844e-04</ROW_NUM_16>
   <ROW_NUM_17>-3.128259936730703e-06</ROW_NUM_17>
   <ROW_NUM_18>-3.650062187636157e-05</ROW_NUM_18>
   <ROW_NUM_19>2.395433833400879e-05</ROW_NUM_19>
   <ROW_NUM_20>4.698913835624251e-08</ROW_NUM_20>
   <ROW_DEN_01>1.000000000000000e+00</ROW_DEN_01>
   <ROW_DEN_02>7.058229152761374e-03</ROW_DEN_02>
   <ROW_DEN_03>1.156136888499405e-03</ROW_DEN_03>
   <ROW_DEN_04>-8.860940088455943e-04</ROW_DEN_04>
   <ROW_DEN_05>-8.320658687426785e-05</ROW_DEN_05>
   <ROW_DEN_06>-1.184134147681514e-05</ROW_DEN_06>
   <ROW_DEN_07>-1.811880487992276e-05</ROW_DEN_07>
   <ROW_DEN_08>5.204567225373372e-04</ROW_DEN_08>
   <ROW_DEN_09>5.675720214845850e-04</ROW_DEN_09>
   <ROW_DEN_10>2.353074912835463e-06</ROW_DEN_10>
   <ROW_DEN_11>-6.051197067591524e-07</ROW_DEN_11>
   <ROW_DEN_12>8.378199026322798e-07</ROW_DEN_12>
   <ROW_DEN_13>3.355572538484822e-06</ROW_DEN_13>
   <ROW_DEN_14>2.116862607563033e-08</ROW_DEN_14>
   <ROW_DEN_15>1.406723174673034e-05</ROW_DEN_15>
   <ROW_DEN_16>-3.622423889876280e-05</ROW_DEN_16>
   <ROW_DEN_17>-2.011650226599876e-08</ROW_DEN_17>
   <ROW_DEN_18>4.058570007623649e-07</ROW_DEN_18>
   <ROW_DEN_19>-1.315965456704028e-06</ROW_DEN_19>
   <ROW_DEN_20>3.828533486863639e-08</ROW_DEN_20>
   <COL_NUM_01>-2.036246886373871e-02</COL_NUM_01>
   <COL_NUM_02>1.148235403201092e+00</COL_NUM_02>
   <COL_NUM_03>-2.678506820047697e-01</COL_NUM_03>
   <COL_NUM_04>1.533598851493571e-04</COL_NUM_04>
   <COL_NUM_05>-2.656095251500247e-03</COL_NUM_05>
   <COL_NUM_06>1.987294407391653e-03</COL_NUM_06>
   <COL_NUM_07>-5.864121896168968e-04</COL_NUM_07>
   <COL_NUM_08>7.471067361379374e-03</COL_NUM_08>
   <COL_NUM_09>2.694967873426586e-03</COL_NUM_09>
   <COL_NUM_10>1.390099496733543e-07</COL_NUM_10>
   <COL_NUM_11>-2.584289508183261e-05</COL_NUM_11>
   <COL_NUM_12>3.118857638215239e-04</COL_NUM_12>
   <COL_NUM_13>1.369682573358959e-04</COL_NUM_13>
   <COL_NUM_14>7.431801875821553e-06</COL_NUM_14>
   <COL_NUM_15>2.051622422584366e-05</COL_NUM_15>
   <COL_NUM_16>-7.265175373859996e-04</COL_NUM_16>
   <COL_NUM_17>-1.957482211067289e-06</COL_NUM_17>
   <COL_NUM_18>2.299704649114669e-06</COL_NUM_18>
   <COL_NUM_19>6.613555126511481e-07</COL_NUM_19>
   <COL_NUM_20>-2.766733832445123e-08</COL_NUM_20>
   <COL_DEN_01>1.000000000000000e+00</COL_DEN_01>
   <COL_DEN_02>7.058229152761374e-03</COL_DEN_02>
   <COL_DEN_03>1.156136888499405e-03</COL_DEN_03>
   <COL_DEN_04>-8.860940088455943e-04</COL_DEN_04>
   <COL_DEN_05>-8.320658687426785e-05</COL_DEN_05>
   <COL_DEN_06>-1.184134147681514e-05</COL_DEN_06>
   <COL_DEN_07>-1.811880487992276e-05</COL_DEN_07>
   <COL_DEN_08>5.204567225373372e-04</COL_DEN_08>
   <COL_DEN_09>5.675720214845850e-04</COL_DEN_09>
   <COL_DEN_10>2.353074912835463e-06</COL_DEN_10>
   <COL_DEN_11>-6.051197067591524e-07</COL_DEN_11>
   <COL_DEN_12>8.378199026322798e-07</COL_DEN_12>
   <COL_DEN_13>3.355572538484822e-06</COL_DEN_13>
   <COL_DEN_14>2.116862607563033e-08</COL_DEN_14>
   <COL_DEN_15>1.406723174673034e-05</COL_DEN_15>
   <COL_DEN_16>-3.622423889876280e-05</COL_DEN_16>
   <COL_DEN_17>-2.011650226599876e-08</COL_DEN_17>
   <COL_DEN_18>4.058570007623649e-07</COL_DEN_18>
   <COL_DEN_19>-1.315965456704028e-06</COL_DEN_19>
   <COL_DEN_20>3.828533486863639e-08</COL_DEN_20>
  </bandID>
 </RPC>
</navigation>
<time>
 <swir>
  <frameTime number="1" _n="1024">2017-06-26T10:20:21.000000Z</frameTime>
 </swir>
 <vnir>
  <frameTime number="1" _n="1024">2017-06-26T10:20:20.999936Z</frameTime>
  <jitter number="1" _n="1024">6.3412771644e-05</jitter>
 </vnir>
</time>
<bandStatistics>
 <bandID number="1" _n="218">
  <waveLength>423.03</waveLength>
  <mean>0.0279624</mean>
  <stdDeviation>0.011186</stdDeviation>
 </bandID>
</bandStatistics>
</sections>
"""
"""Skeletons of the large product sections of a real METADATA.XML (calibration, navigation,
frame times, band statistics): one instance of each repeated element, with ``_n`` = how many
times it repeats in the real file (datatake 326721, tile 001). ``xmlwriter`` expands them to
the real size."""
